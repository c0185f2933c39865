"""The built-in synthetic dataset: deterministic cephalogram-like images with landmarks on visible anatomy."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from cephalo.datasets.synthetic import (
    DEFAULT_SPACING_MM,
    SYNTHETIC_LANDMARKS,
    image_seed,
    landmark_names,
    render_cephalogram,
    spacing_for_size,
    write_synthetic_dataset,
)

ISBI_ORDER = ("S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go",
              "LIT", "UIT", "UL", "LL", "Sn", "PogS", "PNS", "ANS", "Ar")  # fmt: skip


def _inside(landmarks: np.ndarray, size: tuple[int, int], margin: float = 0.03) -> bool:
    h, w = size
    x, y = landmarks[:, 0], landmarks[:, 1]
    eps = 1e-6
    return bool(
        (x >= margin * w - 0.5 - eps).all() and (x <= (1 - margin) * w - 0.5 + eps).all()
        and (y >= margin * h - 0.5 - eps).all() and (y <= (1 - margin) * h - 0.5 + eps).all()
    )  # fmt: skip


def _local_std(image: np.ndarray, radius: int) -> np.ndarray:
    f = image.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.boxFilter(f, -1, k, borderType=cv2.BORDER_REPLICATE)
    mean_sq = cv2.boxFilter(f * f, -1, k, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


# ---------------------------------------------------------------------------------------------------------- names


def test_names():
    assert SYNTHETIC_LANDMARKS == ISBI_ORDER
    assert landmark_names(19) == ISBI_ORDER
    assert landmark_names(1) == ("S",)
    assert landmark_names(5) == ISBI_ORDER[:5]
    names = landmark_names(29)
    assert names[:19] == ISBI_ORDER and names[19:] == tuple(f"P{i}" for i in range(20, 30))
    assert len(set(landmark_names(100))) == 100
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            landmark_names(bad)


# ------------------------------------------------------------------------------------------------------ rendering


def test_shapes_dtypes_default_size():
    image, landmarks = render_cephalogram(0)
    assert image.shape == (640, 512) and image.dtype == np.uint8
    assert landmarks.shape == (19, 2) and landmarks.dtype == np.float64
    assert np.isfinite(landmarks).all()


def test_deterministic_by_seed():
    a_img, a_lm = render_cephalogram(123)
    b_img, b_lm = render_cephalogram(123)
    assert a_img.tobytes() == b_img.tobytes()
    assert np.array_equal(a_lm, b_lm)
    c_img, c_lm = render_cephalogram(124)
    assert not np.array_equal(a_img, c_img)
    assert np.abs(a_lm - c_lm).max() > 1.0
    neg_img, _ = render_cephalogram(-123)
    assert not np.array_equal(a_img, neg_img)


@pytest.mark.parametrize("k", [1, 19, 29, 60])
def test_any_number_of_landmarks(k):
    image, landmarks = render_cephalogram(5, num_landmarks=k)
    assert landmarks.shape == (k, 2)
    assert _inside(landmarks, image.shape)
    assert len(np.unique(np.round(landmarks, 3), axis=0)) == k  # no two landmarks on the same spot
    # more landmarks only append points: the image and the first landmarks stay the same
    ref_image, ref_landmarks = render_cephalogram(5, num_landmarks=19)
    assert np.array_equal(image, ref_image)
    n = min(k, 19)
    assert np.array_equal(landmarks[:n], ref_landmarks[:n])


@pytest.mark.parametrize("size", [(256, 256), (1024, 1024), (300, 200), (200, 300), (64, 48)])
def test_any_image_size(size):
    image, landmarks = render_cephalogram(3, image_size=size, num_landmarks=29)
    assert image.shape == size and image.dtype == np.uint8
    assert _inside(landmarks, size)
    # the head is scaled to fit: the landmark cloud spans a similar fraction of the fitted size
    fit = min(size[0] / 640, size[1] / 512)
    _, ref = render_cephalogram(3, num_landmarks=29)
    span, ref_span = np.ptp(landmarks, axis=0), np.ptp(ref, axis=0)
    assert np.allclose(span / fit, ref_span, rtol=0.12)


def test_landmarks_scale_with_proportional_sizes():
    _, base = render_cephalogram(9)
    _, double = render_cephalogram(9, image_size=(1280, 1024))
    _, half = render_cephalogram(9, image_size=(320, 256))
    # pixel centres: x_big = 2 x + 0.5, x_small = (x + 0.5) / 2 - 0.5
    assert np.allclose(double, 2 * base + 0.5, atol=1e-6)
    assert np.allclose(half, (base + 0.5) / 2 - 0.5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError):
        render_cephalogram(0, image_size=(640,))
    with pytest.raises(ValueError):
        render_cephalogram(0, image_size=(4, 4))
    with pytest.raises(ValueError):
        render_cephalogram(0, num_landmarks=0)


def test_landmarks_inside_and_pose_varies():
    clouds = []
    for seed in range(24):
        image, landmarks = render_cephalogram(seed, num_landmarks=29)
        assert _inside(landmarks, image.shape), seed
        clouds.append(landmarks)
    clouds = np.stack(clouds)  # (seeds, K, 2)
    # position varies: each landmark's spread over seeds is several pixels
    spread = clouds.std(axis=0)
    assert (spread > 3.0).all()
    assert spread.mean() > 8.0
    # rotation varies: the S -> N direction turns by several degrees over seeds
    sn = clouds[:, 1] - clouds[:, 0]
    angles = np.degrees(np.arctan2(sn[:, 1], sn[:, 0]))
    assert np.ptp(angles) > 6.0
    # scale varies: the S-Me distance changes by more than 10 % over seeds
    s_me = np.linalg.norm(clouds[:, 7] - clouds[:, 0], axis=1)
    assert s_me.max() / s_me.min() > 1.1


def test_facing_right_anatomy_order():
    for seed in range(8):
        _, lm = render_cephalogram(seed)
        p = dict(zip(ISBI_ORDER, lm))
        assert p["N"][0] > p["S"][0] + 50  # the face is on the right
        assert p["S"][0] > p["Po"][0]
        assert p["Me"][1] > p["ANS"][1] > p["N"][1]  # chin below the nose below nasion
        assert p["UL"][0] > p["UIT"][0] and p["LL"][0] > p["LIT"][0]  # lips in front of the incisors
        assert p["PogS"][0] > p["Pog"][0]
        assert p["ANS"][0] > p["PNS"][0] + 50


def test_landmarks_sit_on_visible_structure():
    """Local contrast at the landmarks is clearly higher than at random points, in the whole image and in the head."""
    rng = np.random.default_rng(0)
    ratio_image, ratio_head = [], []
    for seed in range(8):
        image, landmarks = render_cephalogram(seed, num_landmarks=29)
        contrast = _local_std(image, 6)
        ij = np.round(landmarks).astype(int)
        at_landmarks = contrast[ij[:, 1], ij[:, 0]].mean()
        pts = rng.integers(0, image.shape[::-1], (4000, 2))
        at_random = contrast[pts[:, 1], pts[:, 0]]
        head = cv2.GaussianBlur(image, (0, 0), 4) > np.percentile(image, 30) + 10
        in_head = head[pts[:, 1], pts[:, 0]]
        ratio_image.append(at_landmarks / at_random.mean())
        ratio_head.append(at_landmarks / at_random[in_head].mean())
    assert np.mean(ratio_image) > 2.0 and min(ratio_image) > 1.5
    assert np.mean(ratio_head) > 1.6 and min(ratio_head) > 1.3


def test_head_brighter_than_background():
    for seed in range(6):
        image, landmarks = render_cephalogram(seed)
        h, w = image.shape
        # the top-right corner is air in front of the forehead; the landmarks' bounding box is inside the head
        background = image[: h // 12, -w // 8:].mean()
        x0, y0 = landmarks.min(0).astype(int)
        x1, y1 = landmarks.max(0).astype(int)
        head = image[y0:y1, x0:x1].mean()
        assert head > background + 40, (seed, head, background)
        assert image.std() > 20


# ------------------------------------------------------------------------------------------------------- on disk


def _rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


SMALL = (160, 128)


def test_write_dataset_layout(tmp_path):
    root = tmp_path / "synthetic"
    csv_path = write_synthetic_dataset(root, {"train": 4, "valid": 2, "test": 2}, SMALL, num_landmarks=21, seed=3,
                                       progress=False)
    assert csv_path == root / "landmarks.csv"
    rows = _rows(csv_path)
    names = landmark_names(21)
    assert rows[0] == ["image", "spacing_mm", "split"] + [f"{n}_{a}" for n in names for a in ("x", "y")]
    body = rows[1:]
    assert len(body) == 8
    assert [r[2] for r in body] == ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    assert [r[0] for r in body[:2]] == ["images/train_0000.png", "images/train_0001.png"]
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(r[0].split("/")[1] for r in body)
    assert sorted(p.name for p in root.iterdir()) == ["images", "landmarks.csv", "synthetic.json"]
    assert not list(tmp_path.glob(".synthetic*"))  # no temporary folder left behind
    for r in body:
        assert float(r[1]) == pytest.approx(spacing_for_size(SMALL))
        assert all(len(v.split(".")[1]) == 3 for v in r[3:])  # '%.3f'
        image = cv2.imdecode(np.fromfile(root / r[0], np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape == SMALL and image.dtype == np.uint8
        lm = np.array(r[3:], float).reshape(-1, 2)
        split, index = r[0].split("/")[1][:-4].rsplit("_", 1)
        expected_image, expected = render_cephalogram(image_seed(3, split, int(index)), SMALL, 21)
        assert np.array_equal(image, expected_image)
        assert np.allclose(lm, expected, atol=6e-4)
    info = json.loads((root / "synthetic.json").read_text(encoding="utf-8"))
    assert info["landmark_names"] == list(names)


def test_splits_disjoint_and_stable(tmp_path):
    a = tmp_path / "a"
    write_synthetic_dataset(a, {"train": 3, "valid": 2, "test": 2}, SMALL, progress=False)
    data = {p.name: p.read_bytes() for p in (a / "images").iterdir()}
    assert len(set(data.values())) == len(data)  # no image twice, within or across splits
    seeds = {image_seed(0, s, i) for s, n in (("train", 3), ("valid", 2), ("test", 2)) for i in range(n)}
    assert len(seeds) == 7
    # growing one split leaves every other image as it was
    b = tmp_path / "b"
    write_synthetic_dataset(b, {"train": 5, "valid": 2, "test": 2}, SMALL, progress=False)
    for name, content in data.items():
        assert (b / "images" / name).read_bytes() == content
    # another dataset seed gives other images
    c = tmp_path / "c"
    write_synthetic_dataset(c, {"train": 1}, SMALL, seed=1, progress=False)
    assert (c / "images" / "train_0000.png").read_bytes() != data["train_0000.png"]


def test_spacing_column(tmp_path):
    assert spacing_for_size((640, 512)) == pytest.approx(DEFAULT_SPACING_MM)
    assert spacing_for_size((1280, 1024)) == pytest.approx(DEFAULT_SPACING_MM / 2)
    csv_path = write_synthetic_dataset(tmp_path / "d", {"train": 1}, progress=False)
    assert float(_rows(csv_path)[1][1]) == pytest.approx(DEFAULT_SPACING_MM)
    csv_path = write_synthetic_dataset(tmp_path / "e", {"test": 1}, (320, 256), spacing_mm=0.1, progress=False)
    assert float(_rows(csv_path)[1][1]) == pytest.approx(0.2)


def test_write_is_idempotent_and_regenerates_on_new_parameters(tmp_path):
    root = tmp_path / "ds"
    params = dict(splits={"train": 2, "valid": 1, "test": 1}, image_size=SMALL, progress=False)
    csv_path = write_synthetic_dataset(root, **params)
    files = [csv_path, root / "synthetic.json", *sorted((root / "images").iterdir())]
    mtimes = [p.stat().st_mtime_ns for p in files]
    # same parameters: nothing is rewritten
    assert write_synthetic_dataset(root, **params) == csv_path
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    # other parameters: the dataset is rebuilt in place
    write_synthetic_dataset(root, **{**params, "splits": {"train": 3}})
    assert [r[2] for r in _rows(csv_path)[1:]] == ["train"] * 3
    assert not (root / "images" / "valid_0000.png").exists()
    write_synthetic_dataset(root, **{**params, "splits": {"train": 3}}, num_landmarks=2)
    assert _rows(csv_path)[0] == ["image", "spacing_mm", "split", "S_x", "S_y", "N_x", "N_y"]
    write_synthetic_dataset(root, **{**params, "splits": {"train": 3}}, num_landmarks=2, seed=7)
    assert json.loads((root / "synthetic.json").read_text())["parameters"]["seed"] == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_write_refuses_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_synthetic_dataset(root, {"train": 1}, SMALL, progress=False)
    assert (root / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_synthetic_dataset(empty, {"train": 1}, SMALL, progress=False)
    assert (empty / "landmarks.csv").is_file()


def test_dataset_reads_with_the_csv_reader(tmp_path):
    from cephalo.datasets.csv_dataset import read_csv_dataset

    csv_path = write_synthetic_dataset(tmp_path / "r", {"train": 2, "valid": 1, "test": 1}, SMALL, progress=False)
    records, issues = read_csv_dataset(csv_path, "all")
    assert not issues
    assert [r.split for r in records] == ["train", "train", "valid", "test"]
    assert records[0].landmark_names == SYNTHETIC_LANDMARKS
    valid, _ = read_csv_dataset(csv_path, "valid")
    assert len(valid) == 1 and valid[0].image_path.name == "valid_0000.png"
