import json
import subprocess
import sys

import pytest

from cephalo.cli.main import main
from cephalo.datasets.sources import DatasetSpec, detect_format
from tests.fixtures_datasets import AarizBuilder
from tests.helpers import write_csv_dataset


@pytest.fixture
def aariz(tmp_path):
    builder = AarizBuilder(tmp_path / "Aariz", split_folders={"train": "Train"})
    for i in range(3):
        builder.add_case(f"case{i}", "train")
        builder.add_case(f"val{i}", "valid")
        builder.add_case(f"test{i}", "test", ext=".jpg")
    return builder


def test_detects_formats(tmp_path, aariz):
    csv_path, _ = write_csv_dataset(tmp_path / "csvdata", n=2)
    assert detect_format(aariz.root) == "aariz"
    assert detect_format(csv_path) == "csv" and detect_format(csv_path.parent) == "csv"
    assert detect_format("synthetic") == "synthetic"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--dataset_format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        detect_format(tmp_path / "missing")
    assert DatasetSpec(str(aariz.root)).resolved_format == "aariz"


def test_prepare_lists_every_bad_file_of_every_split(aariz, capsys):
    aariz.image_path("train", "case1").write_bytes(b"broken")                 # unreadable image (train)
    aariz.annotation_path("valid", "val2", "Senior").write_text("{not json")  # bad annotation (valid)
    aariz.add_case("nospacing", "test", pixel_size=None)                       # spacing missing (test)
    args = ["prepare", "--dataset_path", str(aariz.root), "--image_size", "32", "32"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    for expected in ["case1.png: not a readable image", "val2.json: invalid JSON", "'nospacing'", "--skip_bad"]:
        assert expected in err
    with pytest.warns(UserWarning, match="skipping 3"):
        assert main(args + ["--skip_bad"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 images" in out and "valid: 2 images" in out and "test: 3 images" in out


def test_prepare_rejects_landmarks_outside_the_image(tmp_path, capsys):
    csv_path, _ = write_csv_dataset(tmp_path / "d", n=3, size=(80, 60))
    text = csv_path.read_text().splitlines()
    cells = text[1].split(","); cells[2] = "75"; text[1] = ",".join(cells)  # S_x = 75 in a 60 px wide image
    csv_path.write_text("\n".join(text) + "\n")
    assert main(["prepare", "--dataset_path", str(csv_path), "--image_size", "32", "32"]) == 2
    assert "outside the 60x80 image: S (75.0" in capsys.readouterr().err


def test_unknown_split_is_explained(aariz, capsys):
    args = ["prepare", "--dataset_path", str(aariz.root), "--splits", "test1", "--image_size", "32", "32"]
    assert main(args) == 2
    assert "splits: train, valid, test" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "cephalo", "--help"], capture_output=True, text=True, check=True)
    assert "prepare" in out.stdout and "evaluate" in out.stdout


def test_readme_main_job_on_synthetic(tmp_path, capsys):
    """prepare -> baseline -> evaluate on the built-in dataset, as the README runs it (smaller images)."""
    size = ["--image_size", "128", "128"]
    assert main(["prepare", "--dataset_path", "synthetic", *size]) == 0
    assert "train: 48 images" in capsys.readouterr().out
    preds = tmp_path / "baseline.csv"
    assert main(["baseline", "--dataset_path", "synthetic", *size, "--out", str(preds)]) == 0
    assert main(["evaluate", "--dataset_path", "synthetic", "--predictions", str(preds)]) == 0
    out = capsys.readouterr().out
    assert "16 images x 19 landmarks" in out
    mre = json.loads(preds.with_suffix(".eval.json").read_text())["overall"]["mre_mm"]
    assert 3.0 < mre < 30.0  # the mean shape misses: poses vary, so a model has something to learn
