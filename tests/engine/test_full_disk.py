"""The full-disk promises on a real full file system (a small tmpfs; CI runs as root, so there the tests must run).

Each file a run or a command writes, with its stated outcome: checkpoints warn once per failed write and training
goes on with the previous file intact; metrics.jsonl / metrics.csv never keep half a line; the cache stops with one
error line and exit 1; predict, evaluate and report outputs leave no partial file and exit 1; a run that never wrote
best.pt exits 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cephalo.cli.main import main
from cephalo.engine.run.pipeline import train
from cephalo.engine.run.run_log import RunLog
from tests.helpers import TinyHeatmapNet, write_csv_dataset


def mount_tmpfs(disk: Path, options: str):
    """A tmpfs at ``disk``; skipped where mounting is not allowed, except on CI (which runs as root)."""
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test on a real small file system, but mounting a tmpfs failed: {mounted.stderr!r}")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return disk


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at ``tmp_path / "disk"``."""
    yield mount_tmpfs(tmp_path / "disk", "size=4m")
    subprocess.run(["umount", "-l", str(tmp_path / "disk")], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    yield mount_tmpfs(tmp_path / "ro", "size=1m,ro")
    subprocess.run(["umount", "-l", str(tmp_path / "ro")], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up to ``leave`` bytes free with one ballast file; returns it."""
    ballast = disk / "ballast"
    stat = os.statvfs(disk)
    size = max(0, stat.f_bavail * stat.f_frsize - leave)
    with open(ballast, "ab") as f:
        try:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        except OSError:  # the last block: full, as intended
            pass
    return ballast


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def whole_lines(run: Path) -> list[int]:
    """The epochs of metrics.jsonl, after checking that both logs hold whole lines only (small rows still fit in
    a file's last page on a full tmpfs; what did not fit is not half there)."""
    epochs = [json.loads(line)["epoch"] for line in open(run / "metrics.jsonl", encoding="utf-8")]
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert all(len(row.split(",")) == len(header.split(",")) for row in rows)
    return epochs


def test_the_metrics_logs_recover_once_there_is_space_again(tiny_config, small_disk, monkeypatch):
    config = dataclasses.replace(tiny_config, output_dir=str(small_disk / "runs"), epochs=3)
    real_log = RunLog.log_epoch

    def full_during_epoch_2(self, row):
        if row["epoch"] != 2:
            return real_log(self, row)
        ballast = fill(small_disk)
        real_log(self, {**row, "note": "x" * 20000})  # more than a page: it cannot fit, part of it is written
        ballast.unlink()

    monkeypatch.setattr(RunLog, "log_epoch", full_during_epoch_2)
    train(config, TinyHeatmapNet())
    run = small_disk / "runs" / "run"
    assert whole_lines(run) == [1, 3]  # epoch 2's row could not be written, and none of it is left
    assert "note" not in (run / "metrics.csv").read_text()


def test_a_full_cache_disk_is_one_error_line_and_exit_1(tmp_path, small_disk, capsys):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6, size=(600, 500))
    fill(small_disk, leave=64 * 1024)  # room for the first entries only
    code = main(["prepare", "--dataset_path", str(csv_path), "--cache_dir", str(small_disk / "cache"),
                 "--image_size", "512", "512"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "No space left on device" in err and "--cache_dir or set CEPHALO_CACHE" in err
    assert no_partial_files(small_disk)


@pytest.fixture
def trained(tmp_path_factory):
    """A tiny best.pt and its dataset (trained once)."""
    root = tmp_path_factory.mktemp("trained")
    csv_path, _ = write_csv_dataset(root / "data", n=6, size=(80, 64))
    assert main(["train", "--dataset_path", str(csv_path), "--image_size", "64", "64", "--epochs", "1",
                 "--batch_size", "2", "--num_workers", "0", "--no_progress", "--device", "cpu", "--model",
                 "hrnet_w18_small", "--cache_dir", str(root / "cache"), "--output_dir", str(root / "runs"),
                 "--run_name", "r"]) == 0
    return {"csv": csv_path, "checkpoint": root / "runs" / "r" / "best.pt"}


def test_predict_and_evaluate_on_a_full_disk_leave_no_partial_file(trained, small_disk, tmp_path, capsys):
    out = small_disk / "preds"
    out.mkdir()
    fill(small_disk, leave=1024)  # a JSON or two, not the rest
    code = main(["predict", "--checkpoint", str(trained["checkpoint"]), str(trained["csv"]), "--out", str(out),
                 "--num_workers", "0", "--no_progress", "--device", "cpu", "--overlay"])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and err.strip().splitlines()[-1].startswith("error: ")
    assert no_partial_files(out) and all(json.loads(p.read_text()) for p in out.glob("*.json"))

    (small_disk / "ballast").unlink()
    shutil.rmtree(out)
    assert main(["predict", "--checkpoint", str(trained["checkpoint"]), str(trained["csv"]), "--out", str(out),
                 "--num_workers", "0", "--no_progress", "--device", "cpu"]) == 0
    preds = tmp_path / "predictions.csv"
    shutil.copy(out / "predictions.csv", preds)
    fill(small_disk, leave=2048)
    code = main(["evaluate", "--dataset_path", str(trained["csv"]), "--predictions", str(preds),
                 "--output", str(small_disk / "eval.json"), "--report", str(small_disk / "report")])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: ") and "No space left" in err
    assert no_partial_files(small_disk)


def test_a_run_that_never_wrote_best_pt_exits_1(tiny_config, tmp_path, capsys):
    code = main(["train", "--dataset_path", tiny_config.dataset_path, "--image_size", "32", "32",
                 "--batch_size", "2", "--max_updates", "1", "--val_every", "2", "--num_workers", "0",
                 "--no_progress", "--output_dir",
                 str(tmp_path / "runs"), "--run_name", "short", "--cache_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 1 and "error: no best.pt was written" in err
    assert not (tmp_path / "runs" / "short" / "best.pt").exists()


def test_a_read_only_cache_or_output_folder_says_what_to_do(tmp_path, read_only_disk, monkeypatch, capsys):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=4, size=(80, 64))
    monkeypatch.setenv("CEPHALO_CACHE", str(read_only_disk / "cache"))  # no flag: found while caching
    assert main(["prepare", "--dataset_path", str(csv_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err and "--cache_dir or set CEPHALO_CACHE" in err
    assert main(["train", "--dataset_path", str(csv_path), "--output_dir", str(read_only_disk / "runs")]) == 2
    err = capsys.readouterr().err  # a flag: found when it is parsed
    assert err.count("\n") == 1 and "--output_dir" in err and "is not writable" in err
