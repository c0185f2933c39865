"""``cephalo predict`` and the inference behind it (cephalo.inference: inputs, predict, outputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cephalo.cli.main import main
from cephalo.datasets.sources import DatasetSpec, collect_records, load_records
from cephalo.evaluation.evaluate import score_predictions
from cephalo.evaluation.predictions import match_predictions, read_predictions
from cephalo.image_io import read_grey, write_image
from cephalo.inference.inputs import InputImage, resolve_inputs
from cephalo.inference.outputs import output_stems, predict_to_folder
from cephalo.preprocessing.letterbox import Letterbox
from cephalo.visualize.overlay import draw_landmarks
from tests.fixtures_datasets import AarizBuilder, IsbiBuilder
from tests.helpers import KnownLandmarksPredictor, write_csv_dataset

NAMES = ("S", "N", "Me")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from two threads, and on a shared CPU two spinning threads can be 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny checkpoint from a real (1-epoch) training run, and the CSV dataset it was trained on."""
    from cephalo.engine.config import TrainConfig
    from cephalo.engine.run.pipeline import train

    root = tmp_path_factory.mktemp("predict")
    csv_path, points = write_csv_dataset(root / "data", n=6, size=(80, 64), names=NAMES)
    config = TrainConfig(dataset_path=str(csv_path), augmentation="none", image_size=(64, 64), epochs=1,
                         model="hrnet_w18_small",
                         batch_size=2, num_workers=0, progress=False, output_dir=str(root / "runs"), run_name="r",
                         val_fraction=0.34, cache_dir=str(root / "cache"))
    train(config)
    return {"checkpoint": root / "runs" / "r" / "best.pt", "csv": csv_path, "points": points}


def predict(args: list[str]) -> int:
    return main(["predict", "--no_progress", "--num_workers", "0", *map(str, args)])


# ------------------------------------------------------------------------------------- coordinates, via a stub


def test_ground_truth_heatmaps_give_ground_truth_back_in_original_pixels(tmp_path):
    """Through the CLI's loop (workers, letterbox, decode, inverse map, CSV/JSON): < 0.5 px at a 1024² letterbox."""
    size = (1024, 1024)
    rng = np.random.default_rng(0)
    items, truth, by_image = [], {}, {}
    for i, (h, w) in enumerate([(2400, 1935), (1000, 1400), (800, 800)]):
        yy, xx = np.mgrid[0:h, 0:w]
        image = ((xx * 7 + yy * 3 + i * 50) % 251).astype(np.uint8)
        path = tmp_path / "in" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        write_image(path, image)
        points = rng.uniform([20, 20], [w - 21, h - 21], (4, 2))
        letterbox = Letterbox((h, w), size)
        letterboxed = torch.from_numpy(letterbox.apply(read_grey(path)))[None]
        by_image[KnownLandmarksPredictor.key(letterboxed)] = letterbox.forward(points)
        truth[str(path)] = points
        items.append(InputImage(path=path, key=str(path)))
    predictor = KnownLandmarksPredictor(size, ("a", "b", "c", "d"), by_image)
    summary = predict_to_folder(predictor, items, tmp_path / "out", batch_size=2, num_workers=1, progress=False)
    assert not summary.failures and len(summary.predicted) == 3
    names, predicted = read_predictions(tmp_path / "out" / "predictions.csv")
    assert names == ("a", "b", "c", "d")
    errors = [np.abs(predicted[k] - truth[k]).max() for k in truth]
    assert max(errors) < 0.5, errors
    data = json.loads((tmp_path / "out" / "0.json").read_text())
    assert data["image_size"] == [2400, 1935]
    assert abs(data["landmarks"]["a"]["x"] - truth[str(items[0].path)][0, 0]) < 0.5


# ----------------------------------------------------------------------------------------------------- the CLI


def test_predict_a_folder_of_images(trained, tmp_path, capsys):
    images = trained["csv"].parent / "images"  # a plain folder: not a dataset, even though it sits in one
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], images, "--out", out, "--overlay"]) == 0
    stdout = capsys.readouterr().out
    assert "6 images predicted, 0 failed" in stdout and "images/s" in stdout and str(out) in stdout
    names, predicted = read_predictions(out / "predictions.csv")
    assert names == NAMES and len(predicted) == 6
    header, row = (out / "predictions.csv").read_text().splitlines()[:2]
    assert header.startswith("image,spacing_mm,S_x,S_y") and row.split(",")[1] == ""  # spacing unknown: empty
    assert row.split(",")[0] == str(images / "000.png")  # the path as given
    data = json.loads((out / "000.json").read_text())
    assert data["image"] == str(images / "000.png") and data["image_size"] == [80, 64] and data["spacing_mm"] is None
    assert list(data["landmarks"]) == list(NAMES)
    s = data["landmarks"]["S"]
    assert set(s) == {"x", "y", "confidence"} and 0 <= s["x"] <= 63 and 0 <= s["y"] <= 79
    overlay = read_grey(out / "000_overlay.jpg")
    assert overlay.shape[1] == 64 and overlay.shape[0] > 80  # the image under a title strip
    # the predictions CSV scores against the dataset (rows matched by path)
    records = load_records(DatasetSpec(str(trained["csv"])), "all")
    report = score_predictions(records, names, predicted).report
    assert report["images"] == 6 and not report["missing"]


def test_predict_a_csv_dataset_then_evaluate(trained, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"], "--out", out, "--overlay",
                    "--batch_size", "4"]) == 0
    stdout = capsys.readouterr().out
    assert "csv dataset, split all: 6 image(s)" in stdout and "MRE" in stdout
    _, predicted = read_predictions(out / "predictions.csv")
    assert sorted(predicted) == [f"images/{i:03d}.png" for i in range(6)]  # relative to the dataset, like its CSV
    data = json.loads((out / "003.json").read_text())
    assert data["spacing_mm"] == 0.1
    s = data["landmarks"]["S"]
    assert s["x_mm"] == pytest.approx(s["x"] * 0.1, abs=2e-3) and s["y_mm"] == pytest.approx(s["y"] * 0.1, abs=2e-3)
    assert len(list(out.glob("*_overlay.jpg"))) == 6
    assert main(["evaluate", "--dataset_path", str(trained["csv"]), "--predictions", str(out / "predictions.csv"),
                 "--report", str(tmp_path / "report")]) == 0
    assert "MRE" in capsys.readouterr().out
    evaluated = json.loads((out / "predictions.eval.json").read_text())  # where the predictions came from
    assert evaluated["prediction_run"]["model"]["sha256"] == json.loads((out / "run.json").read_text())["model"][
        "sha256"]
    assert "SHA-256" in (tmp_path / "report" / "report.html").read_text()


def test_predicts_hint_is_the_evaluate_command_that_scores_the_same_images(trained, tmp_path, capsys):
    """The closing hint was '--dataset_path ...': now the real command, with the split it predicted, runs as
    printed and scores exactly the images predicted."""
    import shlex

    out = tmp_path / "out dir"  # a space: the command quotes it
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"], "--out", out, "--test_fold", "2/3",
                    "--split", "test"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "the full table: " in line)
    words = shlex.split(line.split("the full table: ", 1)[1])
    assert words[:2] == ["cephalo", "evaluate"] and "..." not in words and "--test_fold" in words
    assert main(words[1:]) == 0
    report = json.loads((out / "predictions.eval.json").read_text())
    assert report["images"] == len(read_predictions(out / "predictions.csv")[1]) == 2 and not report["missing"]


def test_run_json_records_the_model_its_validation_figure_and_each_images_spacing_source(trained, tmp_path):
    import hashlib

    image = trained["csv"].parent / "images" / "004.png"
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"], image, "--out", out, "--tta"]) == 0
    record = json.loads((out / "run.json").read_text())
    model = record["model"]
    assert model["sha256"] == hashlib.sha256(trained["checkpoint"].read_bytes()).hexdigest()
    assert model["kind"] == "one stage" and model["global"]["model"] == "hrnet_w18_small"
    assert model["validation"]["val_mre_mm"] > 0 and record["tta"]["global_views"] == 7
    assert record["finished"] and record["cephalo"] and record["command"][:2] == ["cephalo", "predict"]
    sources = {entry["image"]: entry["spacing_source"] for entry in record["images"]}
    assert sources["images/004.png"] == "dataset" and len(sources) == 6  # the file again: the dataset's row wins
    assert set(record["outputs"]) == {p.name for p in out.iterdir()} - {"run.json"}


def test_a_non_empty_out_is_refused_and_overwrite_removes_only_the_earlier_prediction(trained, tmp_path, capsys):
    """A reused --out kept stale files of an earlier run beside the new ones without a word."""
    images = trained["csv"].parent / "images"
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], images, "--out", out]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    one = tmp_path / "one"
    one.mkdir()
    (one / "002.png").write_bytes((images / "002.png").read_bytes())
    assert predict(["--checkpoint", trained["checkpoint"], one, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out} is not empty") and "--overwrite" in err and err.count("\n") == 1
    assert predict(["--checkpoint", trained["checkpoint"], one, "--out", out, "--overwrite"]) == 0
    assert "removed 8 file(s) of an earlier prediction" in capsys.readouterr().out  # 6 JSON, the CSV, run.json
    assert sorted(p.name for p in out.iterdir()) == ["002.json", "notes.txt", "predictions.csv", "run.json"]


def test_overwrite_of_a_folder_from_before_run_json_removes_its_predictions_only(trained, tmp_path, capsys):
    images = trained["csv"].parent / "images"
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], images, "--out", out, "--overlay"]) == 0
    (out / "run.json").unlink()  # what cephalo predict wrote before it recorded its outputs
    (out / "settings.json").write_text('{"theirs": 1}')
    assert predict(["--checkpoint", trained["checkpoint"], images / "000.png", "--out", out, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000.json", "predictions.csv", "run.json", "settings.json"]


def test_predict_report_writes_a_page_per_image_and_an_index_that_overwrite_clears(trained, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"], "--out", out, "--report"]) == 0
    assert "report pages: " in capsys.readouterr().out
    pages = sorted(p.name for p in (out / "report").iterdir())
    assert pages == ["000.html", "001.html", "002.html", "003.html", "004.html", "005.html", "index.html"]
    page = (out / "report" / "003.html").read_text()
    assert "images/003.png" in page and "0.1 mm/px (dataset)" in page and "data:image/jpeg;base64," in page
    assert "one stage, SHA-256" in page  # the model: its file, kind and digest
    assert "MRE" in page and "on its own validation split" in page
    index = (out / "report" / "index.html").read_text()
    assert all(f"{i:03d}.html" in index for i in range(6))
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"].parent / "images" / "000.png",
                    "--out", out, "--overwrite"]) == 0
    assert not (out / "report").exists()  # the earlier run's pages went with it


def test_bad_images_are_listed_and_skipped(trained, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("000.png", "001.png"):
        (folder / name).write_bytes((trained["csv"].parent / "images" / name).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image: ignored in a folder")
    out = tmp_path / "out"
    args = ["predict", "--no_progress", "--num_workers", "1", "--checkpoint", str(trained["checkpoint"]), str(folder),
            str(tmp_path / "missing.png"), "--out", str(out)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "2 images predicted, 3 failed" in captured.out
    for expected in ["broken.png: not a readable image", "empty.jpg: the file is empty", "missing.png: not found"]:
        assert expected in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["000.json", "001.json", "predictions.csv", "run.json"]
    assert len(read_predictions(out / "predictions.csv")[1]) == 2
    record = json.loads((out / "run.json").read_text())
    assert record["finished"] and len(record["failed"]) == 3 and any("broken.png" in f for f in record["failed"])


def test_wrong_checkpoint_and_no_images_exit_2(trained, tmp_path, capsys):
    image = trained["csv"].parent / "images" / "000.png"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    cases = [(tmp_path / "missing.pt", "no such file"), (garbage, "not a readable cephalo checkpoint"),
             (other, "not a cephalo checkpoint")]
    for checkpoint, message in cases:
        assert predict(["--checkpoint", checkpoint, image, "--out", tmp_path / "o"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and str(checkpoint) in err
    (tmp_path / "empty").mkdir()
    assert predict(["--checkpoint", trained["checkpoint"], tmp_path / "empty", "--out", tmp_path / "o"]) == 2
    assert "no input images" in capsys.readouterr().err


def test_spacing_mm_and_clashing_stems(trained, tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "001.png").write_bytes((trained["csv"].parent / "images" / "001.png").read_bytes())
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], tmp_path / "a", tmp_path / "b" / "001.png",
                    "--out", out, "--spacing_mm", "0.2"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["a_001.json", "b_001.json", "run.json"]
    data = json.loads((out / "b_001.json").read_text())
    assert data["spacing_mm"] == 0.2 and data["spacing_source"] == "--spacing_mm" and data["image"] == str(tmp_path / "b" / "001.png")
    s = data["landmarks"]["N"]
    assert s["x_mm"] == pytest.approx(s["x"] * 0.2, abs=2e-3)
    assert (out / "predictions.csv").read_text().splitlines()[1].split(",")[1] == "0.2"
    assert predict(["--checkpoint", trained["checkpoint"], tmp_path / "a", "--out", out, "--spacing_mm", "-1"]) == 2
    assert "--spacing_mm" in capsys.readouterr().err


def test_resolve_inputs_and_output_stems(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "d", n=2)
    items, issues, _ = resolve_inputs([str(csv_path.parent / "images"), str(csv_path), str(tmp_path / "nope")])
    # the dataset's two images are the folder's two files: each file once, the first mention (the folder) wins
    assert [it.key for it in items] == [str(csv_path.parent / "images" / f"00{i}.png") for i in range(2)]
    assert [str(i.path) for i in issues] == [str(tmp_path / "nope")]
    items, _, _ = resolve_inputs([str(csv_path.parent)])  # the dataset folder: ground truth and spacing known
    assert [it.key for it in items] == ["images/000.png", "images/001.png"]
    assert items[0].spacing_mm == 0.1 and items[0].truth.shape == (3, 2)
    with pytest.raises(ValueError, match="--split"):
        resolve_inputs([str(csv_path)], split="test1")
    stems = output_stems([InputImage(tmp_path / p, p) for p in ["x/1.png", "y/1.png", "x/1.PNG", "2.png"]])
    assert stems == ["x_1", "y_1", "x_1_2", "2"]


def test_aariz_and_isbi_inputs_predict_their_test_split_with_keys_evaluate_matches(trained, tmp_path, capsys):
    aariz = AarizBuilder(tmp_path / "Aariz")
    for i in range(2):
        aariz.add_case(f"train{i}", "train")
        aariz.add_case(f"test{i}", "test", ext=".jpg")
    aariz.add_case("nospacing", "test", pixel_size=None)  # a dataset item that cannot be read: listed, not fatal
    isbi = IsbiBuilder(tmp_path / "ISBI")
    isbi.add_case("001", "train")
    isbi.add_case("151", "test1")
    out = tmp_path / "out"
    assert predict(["--checkpoint", trained["checkpoint"], aariz.root, isbi.root, "--out", out, "--overlay"]) == 1
    captured = capsys.readouterr()
    assert "aariz dataset, split test: 2 image(s)" in captured.out and "isbi2015 dataset, split test1: 1 image(s)" in captured.out
    assert "3 images predicted, 1 failed" in captured.out and "'nospacing'" in captured.err
    _, predicted = read_predictions(out / "predictions.csv")
    assert sorted(predicted) == ["RawImage/Test1Data/151.bmp", "test/Cephalograms/test0.jpg",
                                 "test/Cephalograms/test1.jpg"]
    assert len(list(out.glob("*_overlay.jpg"))) == 3  # with the ground truth of S, N, Me (Aariz has 29 landmarks)
    for root, fmt, split, n in [(aariz.root, "aariz", "test", 2), (isbi.root, "isbi2015", "test1", 1)]:
        records, _ = collect_records(DatasetSpec(str(root), fmt), split)
        indices, _, _ = match_predictions(records, predicted)
        assert len(indices) == n == len(records)


def test_overlay_draws_labels_and_skips_missing_truth():
    image = np.full((300, 200), 230, np.uint8)  # bright "bone"
    predicted = np.array([[50.0, 60.0], [55.0, 62.0], [150.0, 250.0]])
    truth = np.array([[52.0, 58.0], [np.nan, np.nan], [140.0, 240.0]])
    canvas = draw_landmarks(image, predicted, ["A", "B", "C"], truth=truth)
    assert canvas.shape == (300, 200, 3) and canvas.dtype == np.uint8
    assert (canvas.max(axis=2) < 100).sum() > 50  # the dark boxes behind the labels
    assert tuple(canvas[60, 50]) == (40, 40, 255)  # the dot is drawn last: on top
