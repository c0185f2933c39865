"""Resume does not trust the checkpoint silently: the flags actually given are compared with what the run was
trained with; those that define the run are an error naming them, the others a note; a landmark-set mismatch
names both sets."""

from __future__ import annotations

import shutil

import pytest

from cephalo.cli.main import main
from cephalo.engine.config import given_flags
from tests.helpers import write_csv_dataset


@pytest.fixture
def run(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6, size=(80, 64))
    common = ["--image_size", "64", "64", "--batch_size", "2", "--num_workers", "0", "--no_progress", "--device",
              "cpu", "--output_dir", str(tmp_path / "runs"), "--run_name", "r", "--cache_dir", str(tmp_path / "cache")]
    assert main(["train", "--dataset_path", str(csv_path), "--model", "resnet50", "--epochs", "1", *common]) == 0
    return {"csv": csv_path, "dir": tmp_path / "runs" / "r", "root": tmp_path}


def test_a_flag_that_defines_the_run_is_an_error_even_when_it_is_the_default(run, capsys):
    capsys.readouterr()
    # hrnet_w18_small is the default model: the old check ("differs from the default") could not see it
    assert main(["train", "--resume", str(run["dir"]), "--model", "hrnet_w18_small", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume with --model hrnet_w18_small (the run in ") and err.count("\n") == 1
    assert "was trained with resnet50" in err and "Start a new run" in err
    assert main(["train", "--resume", str(run["dir"]), "--image_size", "128", "128"]) == 2
    assert "--image_size 128 128 (the run in" in capsys.readouterr().err
    assert main(["train", "--resume", str(run["dir"]), "--test_fold", "1/3"]) == 2  # another split of the data
    assert "--test_fold 1/3 (the run in" in capsys.readouterr().err


def test_a_harmless_flag_is_a_note_and_the_resumable_ones_apply(run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(run["dir"]), "--epochs", "2", "--lr", "0.5", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "note: --lr 0.5 ignored: a resumed run goes on with 0.002" in out
    assert "epoch   2:" in out and "epoch   3:" not in out  # --epochs applied


def test_another_landmark_set_names_both_sets(run, capsys):
    other, _ = write_csv_dataset(run["root"] / "other", n=6, size=(80, 64), names=("A", "B", "C"))
    assert main(["train", "--resume", str(run["dir"]), "--dataset_path", str(other)]) == 2
    assert "cannot resume with --dataset_path" in capsys.readouterr().err  # the run's own dataset is still there
    shutil.rmtree(run["csv"].parent)  # the data moved away: a new path is accepted, its landmarks checked
    assert main(["train", "--resume", str(run["dir"]), "--dataset_path", str(other), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "the run was trained on the landmarks S, N, Me, the dataset has A, B, C" in err and err.count("\n") == 1


def test_given_flags_are_the_command_line_the_config_file_and_the_preset(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"lr": 0.1}')
    given = given_flags(["--model", "hrnet_w18_small", "--config", str(config), "--preset", "rtx3070ti",
                         "--no_progress"])
    assert {"model", "lr", "progress", "batch_size", "gradient_accumulation_steps", "use_ema"} <= given
    assert "epochs" not in given and "config" not in given
