"""Every guarantee the docs give a run (docs/guarantees.md), proved for each stage through the one fit loop: the
global stage alone, and the local stage alone (``--refine_from`` a global model trained first). Ctrl+C / SIGTERM writes the stage's
recovery file, prints the resume command and resumes to the uninterrupted weights; SIGKILL at a random update then
``--resume`` does too (a real process); an out-of-memory error halves the micro-batch with the same images per
update; ``--max_bad_updates`` stops a stage of non-finite updates (exit code 4); a full disk at a checkpoint or a
log row loses nothing already written; ``--resume`` applies the flags a resume may change and refuses, naming
them, those that define the stage."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cephalo.engine.step.loop as loop
from cephalo.artifact.checkpoint import GLOBAL, LOCAL, load_checkpoint
from cephalo.cli.errors import NON_FINITE, report_errors
from cephalo.engine.run.pipeline import train
from cephalo.engine.run.resume import newest_checkpoint
from cephalo.engine.run.run_log import RunLog
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.stages.local_stage import LocalStage
from tests.engine.test_full_disk import fill, mount_tmpfs
from tests.helpers import write_csv_dataset

STAGE_CLASS = {GLOBAL: GlobalStage, LOCAL: LocalStage}
PREFIX = {GLOBAL: "", LOCAL: "local_"}


@dataclasses.dataclass
class Staged:
    """A tiny run of one stage: ``config`` trains it alone, its files have ``prefix``."""

    name: str
    config: object
    prefix: str

    @property
    def run(self) -> Path:
        return Path(self.config.output_dir) / self.config.run_name

    def file(self, kind: str, run: str | None = None) -> Path:
        return Path(self.config.output_dir) / (run or self.config.run_name) / f"{self.prefix}{kind}.pt"

    def with_(self, **changes):
        """``config`` with ``changes``, each named for this stage (``batch_size`` is ``local_batch`` in the local
        stage, ``epochs`` ``local_epochs``)."""
        names = {"batch_size": "local_batch", "epochs": "local_epochs", "gradient_accumulation_steps":
                 "local_accumulation_steps", "lr": "local_lr"} if self.name == LOCAL else {}
        return dataclasses.replace(self.config, **{names.get(k, k): v for k, v in changes.items()})


@pytest.fixture(params=[GLOBAL, LOCAL])
def staged(request, two_stage_config) -> Staged:
    base = dataclasses.replace(two_stage_config, refine=False, epochs=3, local_epochs=3, use_ema=True)
    if request.param == GLOBAL:
        return Staged(GLOBAL, base, "")
    torch.manual_seed(0)
    source = train(dataclasses.replace(base, run_name="source", epochs=1)).run_dir / "best.pt"
    return Staged(LOCAL, dataclasses.replace(base, refine_from=str(source)), "local_")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def signal_at_update(monkeypatch, n: int, sig=signal.SIGTERM):
    """Send ``sig`` to this process at the stage's ``n``-th update (mid-epoch: 4 updates per epoch); returns the
    real update, to put back."""
    real_update, calls = loop.optimizer_update, []

    def update(parts):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), sig)
        return real_update(parts)

    monkeypatch.setattr(loop, "optimizer_update", update)
    return real_update


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_the_recovery_file_and_resume_gives_the_uninterrupted_weights(staged, monkeypatch, capsys,
                                                                                       sig):
    torch.manual_seed(0)
    train(staged.with_(run_name="full"))
    real_update = signal_at_update(monkeypatch, 6, sig)
    torch.manual_seed(0)
    result = train(staged.config)
    monkeypatch.setattr(loop, "optimizer_update", real_update)
    out = capsys.readouterr().out
    recovery = staged.file("recovery")
    assert result.interrupted == sig.name and f"state saved to {recovery}" in out
    assert f"continue with: cephalo train --resume {staged.run}" in out
    state = load_checkpoint(recovery)
    assert state["progress"]["updates"] == 6 and state["progress"]["batch"] == 2 and state["epoch"] == 1
    assert state.get("training_stage", GLOBAL) == staged.name
    train(dataclasses.replace(staged.config, resume=str(staged.run)))
    a, b = load_checkpoint(staged.file("last", "full")), load_checkpoint(staged.file("last"))
    assert a["updates"] == b["updates"] == 12
    assert_same(a["model"], b["model"])
    assert_same(a["ema"]["module"], b["ema"]["module"])


def test_out_of_memory_halves_the_micro_batch_with_the_same_images_per_update(staged, monkeypatch, capsys):
    stage_class = STAGE_CLASS[staged.name]
    real_loss = stage_class.loss

    def short_of_memory(self, model, batch, augment=True):  # a GPU that holds one image's activations
        if len(batch[0]) > 1 and model.training:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real_loss(self, model, batch, augment)

    torch.manual_seed(0)
    train(staged.with_(run_name="small", batch_size=1, gradient_accumulation_steps=2, max_updates=3))
    monkeypatch.setattr(stage_class, "loss", short_of_memory)
    torch.manual_seed(0)
    train(staged.with_(max_updates=3))
    out = capsys.readouterr().out
    assert "micro-batch 2 -> 1, accumulation 1 -> 2 (still 2 images per update)" in out
    a, b = load_checkpoint(staged.file("last", "small")), load_checkpoint(staged.file("last"))
    assert a["updates"] == b["updates"] == 3 and b["progress"]["micro_batch"] == 1
    for key in a["model"]:  # a sum of the same two half-weighted micro-batches, in another order
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-7)


def test_non_finite_updates_stop_the_stage_with_exit_code_4(staged, monkeypatch, capsys):
    stage_class = STAGE_CLASS[staged.name]
    real_loss, calls = stage_class.loss, []

    def nan_after_5(self, model, batch, augment=True):
        calls.append(1)
        loss = real_loss(self, model, batch, augment)
        return loss * float("nan") if len(calls) > 5 else loss

    monkeypatch.setattr(stage_class, "loss", nan_after_5)
    code = report_errors(lambda: train(staged.with_(max_bad_updates=3, recovery_interval=1)) and 0, "")
    assert code == NON_FINITE
    err = capsys.readouterr().err
    assert "3 " in err and "updates in a row had non-finite loss or gradients" in err
    recovery = load_checkpoint(staged.file("recovery"))  # 4 good updates in epoch 1, one in epoch 2; then NaN
    assert recovery["progress"]["updates"] == 5
    assert all(torch.isfinite(v).all() for v in recovery["model"].values() if v.is_floating_point())


def test_a_full_disk_at_a_checkpoint_or_a_log_row_loses_nothing_written(staged, tmp_path, monkeypatch, capsys):
    """On a real small file system filled up after the first epoch's log row: the stage trains to its end, its last
    file stays the first epoch's, one warning per refused write, the logs hold whole rows, no partial file."""
    disk = mount_tmpfs(tmp_path / "disk", "size=4m")
    try:
        config = dataclasses.replace(staged.config, output_dir=str(disk / "runs"))
        real_log = RunLog.log_epoch

        def fill_after_epoch_1(self, row):
            real_log(self, row)
            if row["epoch"] == 1:
                fill(disk)

        monkeypatch.setattr(RunLog, "log_epoch", fill_after_epoch_1)
        result = train(config)
        assert result.metrics["epoch"] == 3 and result.best_written  # trained to the end
        run, last = disk / "runs" / "run", disk / "runs" / "run" / f"{staged.prefix}last.pt"
        assert load_checkpoint(last)["epoch"] == 1  # the previous file, intact
        warnings = [line for line in capsys.readouterr().err.splitlines()
                    if line.startswith(f"warning: could not write {last}")]
        assert len(warnings) == 2 and "No space left on device" in warnings[0]  # once per failed write
        rows = [json.loads(line)["epoch"] for line in open(run / f"{staged.prefix}metrics.jsonl")]
        header, *lines = (run / f"{staged.prefix}metrics.csv").read_text().splitlines()
        assert rows[0] == 1 and all(len(line.split(",")) == len(header.split(",")) for line in lines)
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_resume_applies_what_may_change_and_refuses_what_defines_the_stage(staged, capsys):
    train(staged.with_(epochs=1))
    resume = dataclasses.replace(staged.config, resume=str(staged.run))
    result = train(dataclasses.replace(resume, **{"local_epochs" if staged.name == LOCAL else "epochs": 2}),
                   given={"epochs", "local_epochs"})
    assert result.metrics["epoch"] == 2  # the longer run, from the resumed one
    lr_flag = "local_lr" if staged.name == LOCAL else "lr"
    train(dataclasses.replace(resume, **{lr_flag: 0.5}), given={lr_flag})
    assert f"note: --{lr_flag} 0.5 ignored: a resumed run goes on with 0.01" in capsys.readouterr().out
    defining = {"patch_mm": 0.3} if staged.name == LOCAL else {"image_size": (64, 64)}
    with pytest.raises(ValueError, match=f"cannot resume with --{next(iter(defining))} "):
        train(dataclasses.replace(resume, **defining), given=set(defining))


@pytest.mark.slow
@pytest.mark.parametrize("stage", [GLOBAL, LOCAL])
def test_sigkill_at_a_random_update_then_resume_gives_the_uninterrupted_weights(tmp_path, stage):
    """A real process killed with SIGKILL, resumed with --resume auto, ends with the uninterrupted weights."""
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=12, size=(64, 48))
    base = [sys.executable, "-m", "cephalo", "train", "--dataset_path", str(csv_path), "--image_size", "32", "32",
            "--model", "hrnet_w18_small", "--batch_size", "2", "--num_workers", "0", "--no_progress",
            "--deterministic", "--use_ema", "--recovery_interval", "1", "--output_dir", str(tmp_path / "runs"),
            "--cache_dir", str(tmp_path / "cache"), "--val_fraction", "0.17"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if stage == GLOBAL:
        base += ["--epochs", "4"]
    else:
        subprocess.run(base + ["--epochs", "1", "--run_name", "source"], check=True, env=env, capture_output=True)
        base += ["--refine_from", str(tmp_path / "runs" / "source" / "best.pt"), "--local_epochs", "4",
                 "--local_batch", "2", "--patch_size", "32", "--local_model", "hrnet_w18_small"]
    prefix = PREFIX[stage]
    subprocess.run(base + ["--run_name", "full"], check=True, env=env, capture_output=True)

    victim = subprocess.Popen(base + ["--run_name", "killed"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    recovery = tmp_path / "runs" / "killed" / f"{prefix}recovery.pt"
    deadline = time.monotonic() + 120
    while not recovery.exists() and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random().uniform(0.0, 2.0))
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = newest_checkpoint(tmp_path / "runs" / "killed").training().progress["updates"]
    assert done < 20  # 10 training images, batches of 2: 5 updates x 4 epochs

    subprocess.run(base + ["--run_name", "killed", "--resume", "auto"], check=True, env=env, capture_output=True)
    full = load_checkpoint(tmp_path / "runs" / "full" / f"{prefix}last.pt")
    resumed = load_checkpoint(tmp_path / "runs" / "killed" / f"{prefix}last.pt")
    assert resumed["updates"] == full["updates"] == 20
    assert_same(full["model"], resumed["model"])
    assert_same(full["ema"]["module"], resumed["ema"]["module"])
