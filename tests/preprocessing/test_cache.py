import json
import os
import pickle

import numpy as np
import pytest
import torch

from cephalo.datasets.csv_dataset import read_csv_dataset
from cephalo.image_io import read_grey
from cephalo.preprocessing.cache import LetterboxCache, find_duplicates
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset
from cephalo.preprocessing.letterbox import Letterbox
from tests.helpers import write_csv_dataset


@pytest.fixture
def dataset(tmp_path):
    csv_path, points = write_csv_dataset(tmp_path / "data", n=4, size=(80, 60))
    records, _ = read_csv_dataset(csv_path)
    return records, points


def test_prepare_writes_letterboxed_images_and_reuses_them(tmp_path, dataset):
    records, _ = dataset
    cache = LetterboxCache(tmp_path / "cache", (32, 32))
    first = cache.prepare(records, progress=False)
    assert (first.decoded, first.reused, first.issues) == (4, 0, [])
    for record, entry in zip(first.records, first.entries):
        assert entry.source_size == (80, 60)
        np.testing.assert_array_equal(entry.load(), Letterbox((80, 60), (32, 32)).apply(read_grey(record.image_path)))
    second = cache.prepare(records, progress=False)
    assert (second.decoded, second.reused) == (0, 4)
    assert [e.array_path for e in second.entries] == [e.array_path for e in first.entries]
    assert not list(cache.folder.glob("*.tmp"))


def test_key_follows_source_identity_and_size(tmp_path, dataset):
    records, _ = dataset
    source = records[0].image_path
    small, large = LetterboxCache(tmp_path, (32, 32)), LetterboxCache(tmp_path, (64, 64))
    assert small.key(source) != large.key(source)
    key = small.key(source)
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: a new entry
    assert small.key(source) != key


def test_interrupted_entry_is_rebuilt(tmp_path, dataset):
    records, _ = dataset
    cache = LetterboxCache(tmp_path / "cache", (32, 32))
    entry = cache.prepare(records[:1], progress=False).entries[0]
    entry.array_path.with_suffix(".json").unlink()  # as if stopped between the two writes
    assert cache.lookup(records[0].image_path) is None
    entry.array_path.with_suffix(".json").write_text("{broken")
    assert cache.lookup(records[0].image_path) is None
    result = cache.prepare(records[:1], progress=False)
    assert result.decoded == 1 and cache.lookup(records[0].image_path) is not None


def test_bad_images_and_outside_landmarks_are_collected(tmp_path, dataset):
    records, _ = dataset
    records[1].image_path.write_bytes(b"garbage")
    records[2].image_path.unlink()
    records[3].landmarks[0] = [500.0, 10.0]  # beyond the 60 px wide image
    result = LetterboxCache(tmp_path / "cache", (32, 32)).prepare(records, progress=False)
    assert [r.case_id for r in result.records] == [records[0].case_id]
    problems = {str(i.path): i.problem for i in result.issues}
    assert "not a readable image" in problems[str(records[1].image_path)]
    assert "not found" in problems[str(records[2].image_path)]
    assert "outside the 60x80 image: S (500.0, 10.0)" in problems[str(records[3].image_path)]


def test_byte_identical_images_are_reported(tmp_path, dataset):
    records, _ = dataset
    records[2].image_path.write_bytes(records[0].image_path.read_bytes())
    result = LetterboxCache(tmp_path / "cache", (32, 32)).prepare(records, progress=False)
    assert find_duplicates(result.records, result.entries) == [[records[0].image_path, records[2].image_path]]


def test_cached_dataset_items_and_inverse_mapping(tmp_path, dataset):
    records, points = dataset
    result = LetterboxCache(tmp_path / "cache", (32, 32)).prepare(records, progress=False)
    ds = CachedLandmarkDataset(result.records, result.entries)
    image, landmarks, index = ds[2]
    assert image.shape == (1, 32, 32) and image.dtype == torch.uint8
    assert landmarks.shape == (3, 2) and landmarks.dtype == torch.float32 and index == 2
    lb = Letterbox((80, 60), (32, 32))
    np.testing.assert_allclose(landmarks.numpy(), lb.forward(points[2]), atol=1e-4)
    back = ds.to_original([2, 0], ds.landmarks[[2, 0]])
    np.testing.assert_allclose(back, points[[2, 0]], atol=1e-3)
    clone = pickle.loads(pickle.dumps(ds))  # workers under Windows' spawn receive a pickled copy
    assert torch.equal(clone[1][0], ds[1][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    images, batch_landmarks, indices = next(iter(loader))
    assert images.shape == (2, 1, 32, 32) and batch_landmarks.shape == (2, 3, 2) and indices.tolist() == [0, 1]


def damaged(path, how: str) -> None:
    """Damage a cached ``.npy`` as a disk or a crash might: cut it short, flip a pixel's byte (seeded), or replace
    it by an array of another shape."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped pixel":  # the pixels are the file's last bytes, after the .npy header
        position = len(data) - 1 - int(np.random.default_rng(0).integers(0, np.load(path).size))
        data[position] ^= 0x5A
        path.write_bytes(bytes(data))
    else:
        np.save(path, np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize("how", ["truncated", "flipped pixel", "another shape"])
@pytest.mark.parametrize("kind", ["letterbox", "patch scale"])
def test_a_damaged_cache_entry_is_named_and_made_again(tmp_path, dataset, capsys, how, kind):
    """Checked once when the entry is looked up (each run's prepare), never per sample: the entry named in a
    warning and rebuilt from its source image, whose pixels come back exactly."""
    from cephalo.preprocessing.cache import PatchScaleCache

    records, _ = dataset
    if kind == "letterbox":
        cache = LetterboxCache(tmp_path / "cache", (32, 32))
        path = cache.prepare(records[:1], progress=False).entries[0].array_path
    else:
        cache = PatchScaleCache(tmp_path / "cache", 0.3)  # 0.1 mm images: 27 x 20 pixels
        path = cache.folder / next(p.name for p in _built(cache, records[0]))
    good = np.load(path)
    damaged(path, how)
    capsys.readouterr()
    if kind == "letterbox":
        result = cache.prepare(records[:1], progress=False)
        assert result.decoded == 1 and result.issues == []
        again = result.entries[0].load()
    else:
        again, _, built = cache.load(records[0])
        assert built
    assert f"warning: damaged cache entry {path}: " in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(again), good)
    assert "pixels_crc32" in json.loads(path.with_suffix(".json").read_text())


def _built(cache, record):
    cache.load(record)
    return sorted(cache.folder.glob("*.npy"))
