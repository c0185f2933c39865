"""Crashes, damaged checkpoints and repeatability: each costs a little work, never a corrupted run (the guarantees
of every stage -- signals, SIGKILL, out of memory, non-finite updates, full disks, resume flags -- are in
test_stage_guarantees.py)."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch

import cephalo.artifact.checkpoint as checkpoint_module
from cephalo.artifact.checkpoint import load_checkpoint
from cephalo.engine.run.pipeline import train
from cephalo.engine.run.resume import newest_checkpoint
from tests.helpers import TinyHeatmapNet


@pytest.fixture
def config(tiny_config):
    return dataclasses.replace(tiny_config, epochs=3, use_ema=True)


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_failed_write_keeps_the_previous_checkpoint(config, monkeypatch, capsys):
    train(dataclasses.replace(config, epochs=1), TinyHeatmapNet())
    last = f"{config.output_dir}/run/last.pt"
    before = open(last, "rb").read()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # part of the file is written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    result = train(dataclasses.replace(config, epochs=2, resume=last), TinyHeatmapNet())
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the previous last.pt is intact" in err
    assert result.metrics["epoch"] == 2  # training went on
    assert open(last, "rb").read() == before
    assert not [p for p in os.listdir(f"{config.output_dir}/run") if p.endswith(".tmp")]


def test_resume_auto_skips_a_damaged_checkpoint(config):
    train(dataclasses.replace(config, epochs=1, recovery_interval=1), TinyHeatmapNet())
    run = f"{config.output_dir}/run"
    assert load_checkpoint(f"{run}/recovery.pt")["progress"]["updates"] == 4
    data = open(f"{run}/last.pt", "rb").read()
    open(f"{run}/last.pt", "wb").write(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    with pytest.warns(UserWarning, match="skipping .*last.pt: .*not a readable cephalo checkpoint"):
        found = newest_checkpoint(Path(run))
    assert found.path.name == "recovery.pt"
    with pytest.warns(UserWarning, match="skipping"):
        result = train(dataclasses.replace(config, resume="auto"), TinyHeatmapNet())
    assert result.metrics["epoch"] == 3


def test_deterministic_runs_repeat(config):
    for name in ("a", "b"):
        torch.manual_seed(123)  # the model's init; the run itself seeds from --seed
        train(dataclasses.replace(config, run_name=name, epochs=2, deterministic=True), TinyHeatmapNet())
    assert_same_weights(weights(f"{config.output_dir}/a/last.pt"), weights(f"{config.output_dir}/b/last.pt"))
    torch.use_deterministic_algorithms(False)


def test_resume_auto_starts_a_new_run_when_there_is_none(config, capsys):
    result = train(dataclasses.replace(config, epochs=1, resume="auto"), TinyHeatmapNet())
    assert result.metrics["epoch"] == 1 and "starting a new run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--resume .*other.*no such checkpoint or run folder"):
        train(dataclasses.replace(config, run_name="other", resume=f"{config.output_dir}/other"), TinyHeatmapNet())
    empty = Path(config.output_dir) / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no valid checkpoint"):
        train(dataclasses.replace(config, run_name="empty", resume=str(empty)), TinyHeatmapNet())
