"""Crashes, interrupts, full disks and numerical faults: each costs a little work, never a corrupted run."""

import copy
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cephalo.engine.checkpoint as checkpoint_module
import cephalo.engine.loop as loop
from cephalo.engine.checkpoint import load_checkpoint
from cephalo.engine.finite import NonFiniteError
from cephalo.engine.resume import newest_checkpoint
from cephalo.engine.trainer import fit
from tests.helpers import TinyHeatmapNet, write_csv_dataset


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
    fit(dataclasses.replace(config, epochs=1), TinyHeatmapNet())
    last = f"{config.output_dir}/run/last.pt"
    before = open(last, "rb").read()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # part of the file is written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    result = fit(dataclasses.replace(config, epochs=2, resume=last), TinyHeatmapNet())
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the previous last.pt is intact" in err
    assert result.metrics["epoch"] == 2  # training went on
    assert open(last, "rb").read() == before
    assert not [p for p in os.listdir(f"{config.output_dir}/run") if p.endswith(".tmp")]


def test_interrupt_mid_epoch_saves_recovery_and_resumes_exactly(config, monkeypatch, capsys):
    torch.manual_seed(0)
    model = TinyHeatmapNet()
    fit(dataclasses.replace(config, run_name="full"), copy.deepcopy(model))

    real_update = loop.optimizer_update
    calls = []

    def signal_on_sixth_update(t):
        calls.append(1)
        if len(calls) == 6:  # in the middle of epoch 2 (4 updates per epoch)
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(t)

    monkeypatch.setattr(loop, "optimizer_update", signal_on_sixth_update)
    result = fit(config, copy.deepcopy(model))
    monkeypatch.setattr(loop, "optimizer_update", real_update)
    out = capsys.readouterr().out
    assert "SIGINT" in result.tracker.stopped_because and "continue with: cephalo train --resume" in out
    state = load_checkpoint(f"{config.output_dir}/run/recovery.pt")
    assert state["progress"]["updates"] == 6 and state["progress"]["batch"] == 2 and state["epoch"] == 1

    fit(dataclasses.replace(config, resume=f"{config.output_dir}/run"), TinyHeatmapNet())
    assert_same_weights(weights(f"{config.output_dir}/full/last.pt"), weights(f"{config.output_dir}/run/last.pt"))


def test_resume_auto_skips_a_damaged_checkpoint(config):
    fit(dataclasses.replace(config, epochs=1, recovery_interval=1), TinyHeatmapNet())
    run = f"{config.output_dir}/run"
    assert load_checkpoint(f"{run}/recovery.pt")["progress"]["updates"] == 4
    data = open(f"{run}/last.pt", "rb").read()
    open(f"{run}/last.pt", "wb").write(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    with pytest.warns(UserWarning, match="skipping .*last.pt: .*not a readable cephalo checkpoint"):
        path, state = newest_checkpoint(__import__("pathlib").Path(run))
    assert path.name == "recovery.pt"
    with pytest.warns(UserWarning, match="skipping"):
        result = fit(dataclasses.replace(config, resume="auto"), TinyHeatmapNet())
    assert result.metrics["epoch"] == 3


def test_non_finite_updates_are_skipped_then_stop(config, monkeypatch):
    real_loss = loop.heatmap_loss
    calls = []

    def nan_after_some_steps(*args):
        calls.append(1)
        loss = real_loss(*args)
        return loss * float("nan") if len(calls) > 5 else loss

    monkeypatch.setattr(loop, "heatmap_loss", nan_after_some_steps)
    with pytest.raises(NonFiniteError, match="3 updates in a row"):
        fit(dataclasses.replace(config, max_bad_updates=3, recovery_interval=1), TinyHeatmapNet())
    state = load_checkpoint(f"{config.output_dir}/run/last.pt")  # epoch 1 ended before the NaNs
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    recovery = load_checkpoint(f"{config.output_dir}/run/recovery.pt")
    # training losses only (validation has its own): 4 good updates in epoch 1 and one in epoch 2, then NaN:
    # skipped, not counted, not written
    assert recovery["progress"]["updates"] == 5 and recovery["progress"]["skipped_updates"] == 0
    assert all(torch.isfinite(v).all() for v in recovery["model"].values() if v.is_floating_point())


def test_deterministic_runs_repeat(config):
    for name in ("a", "b"):
        torch.manual_seed(123)  # the model's init; the run itself seeds from --seed
        fit(dataclasses.replace(config, run_name=name, epochs=2, deterministic=True), TinyHeatmapNet())
    assert_same_weights(weights(f"{config.output_dir}/a/last.pt"), weights(f"{config.output_dir}/b/last.pt"))
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_sigkill_at_a_random_update_then_resume_matches(tmp_path):
    """A real process killed with SIGKILL, resumed with --resume auto, ends with the uninterrupted weights."""
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=12, size=(64, 48))
    base = [sys.executable, "-m", "cephalo", "train", "--dataset_path", str(csv_path), "--image_size", "32", "32",
            "--model", "hrnet_w18_small", "--batch_size", "2", "--epochs", "4", "--num_workers", "0", "--no_progress",
            "--deterministic", "--use_ema", "--recovery_interval", "1", "--output_dir", str(tmp_path / "runs"),
            "--cache_dir", str(tmp_path / "cache"), "--val_fraction", "0.17"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(base + ["--run_name", "full"], check=True, env=env, capture_output=True)

    victim = subprocess.Popen(base + ["--run_name", "killed"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    recovery = tmp_path / "runs" / "killed" / "recovery.pt"
    deadline = time.monotonic() + 120
    while not recovery.exists() and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 2.0))
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = newest_checkpoint(tmp_path / "runs" / "killed")[1]["progress"]["updates"]
    assert done < 20  # 10 training images, batches of 2: 5 updates x 4 epochs

    subprocess.run(base + ["--run_name", "killed", "--resume", "auto"], check=True, env=env, capture_output=True)
    full = load_checkpoint(tmp_path / "runs" / "full" / "last.pt")
    resumed = load_checkpoint(tmp_path / "runs" / "killed" / "last.pt")
    assert resumed["updates"] == full["updates"] == 20
    assert_same_weights(full["model"], resumed["model"])
    assert_same_weights(full["ema"]["module"], resumed["ema"]["module"])


def test_resume_auto_starts_a_new_run_when_there_is_none(config, capsys):
    result = fit(dataclasses.replace(config, epochs=1, resume="auto"), TinyHeatmapNet())
    assert result.metrics["epoch"] == 1 and "starting a new run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--resume .*other.*no such checkpoint or run folder"):
        fit(dataclasses.replace(config, run_name="other", resume=f"{config.output_dir}/other"), TinyHeatmapNet())
    empty = Path(config.output_dir) / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no valid checkpoint"):
        fit(dataclasses.replace(config, run_name="empty", resume=str(empty)), TinyHeatmapNet())
