"""Out-of-memory recovery, with out-of-memory errors injected on the CPU at chosen steps."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from cephalo.cli.train import main as train_main
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.pipeline import train
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.loop import train_one_epoch
from cephalo.engine.step.oom import OutOfMemoryStop, remedies, shrink
from cephalo.engine.step.progress import Progress
from tests.helpers import TinyHeatmapNet


class MemoryLimitedNet(nn.Module):
    """A tiny heatmap net that raises CUDA's out-of-memory error as a small GPU would: for batches above
    ``max_batch`` (from forward call ``after_calls`` on), unless gradient checkpointing is on and fits."""

    def __init__(self, max_batch: int, after_calls: int = 0, fits_checkpointed: bool = True, eval_max_batch=None):
        super().__init__()
        self.net = TinyHeatmapNet()
        self.max_batch, self.after_calls, self.fits_checkpointed = max_batch, after_calls, fits_checkpointed
        self.eval_max_batch, self.eval_batches = eval_max_batch, []
        self.calls, self.checkpointing, self.batches = 0, False, []

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.checkpointing = enable

    def forward(self, x):
        if not self.training:  # validation holds no activations for backward: it fits, unless told otherwise
            if self.eval_max_batch is not None and x.shape[0] > self.eval_max_batch:
                raise torch.OutOfMemoryError("CUDA out of memory (injected by the test, validation)")
            self.eval_batches.append(x.shape[0])
            return self.net(x)
        self.calls += 1
        fits = x.shape[0] <= self.max_batch or (self.checkpointing and self.fits_checkpointed)
        if self.calls > self.after_calls and not fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        self.batches.append(x.shape[0])
        return self.net(x)


@pytest.fixture
def config(tiny_config):
    """The engine tests' tiny run, with a batch of 4 and the user's model name (for the remedies)."""
    return dataclasses.replace(tiny_config, batch_size=4, model="hrnet_w32")


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_oom_halves_the_micro_batch_and_gives_the_same_update_as_small_batches(config, capsys):
    """Batch 4 that does not fit: redone as 2 x 2, then 4 x 1; the update equals batch 1 x accumulation 4."""
    torch.manual_seed(0)
    limited = MemoryLimitedNet(max_batch=1)
    reference = copy.deepcopy(limited.net)
    t = GlobalStage(dataclasses.replace(config, max_updates=1), limited)
    p = Progress()
    train_one_epoch(t, p, after_update=lambda p: p.updates >= 1)
    assert p.updates == 1 and p.seen == 4 and p.micro_batch == 1 and not p.oom_checkpointing
    assert limited.batches == [1, 1, 1, 1]  # the group redone from its first image
    out = capsys.readouterr()
    assert "micro-batch 4 -> 2, accumulation 1 -> 2 (still 4 images per update)" in out.out + out.err
    assert "micro-batch 2 -> 1, accumulation 2 -> 4" in out.out + out.err

    small = GlobalStage(dataclasses.replace(config, batch_size=1, gradient_accumulation_steps=4, max_updates=1),
                           reference)
    train_one_epoch(small, Progress(), after_update=lambda p: p.updates >= 1)
    torch.testing.assert_close(flat(t.parts.raw_model.net), flat(small.parts.raw_model), rtol=1e-4, atol=1e-6)


def test_oom_in_the_middle_of_a_group_redoes_the_whole_group(config):
    """Accumulation 2 x batch 2; memory runs short at the second micro-batch of the first group."""
    limited = MemoryLimitedNet(max_batch=1, after_calls=1)
    t = GlobalStage(dataclasses.replace(config, batch_size=2, gradient_accumulation_steps=2, max_updates=1), limited)
    p = Progress()
    train_one_epoch(t, p, after_update=lambda p: p.updates >= 1)
    assert limited.batches == [2, 1, 1, 1, 1]  # the first forward, then the group again in micro-batches of 1
    assert p.updates == 1 and p.seen == 4 and p.micro_batch == 1


def test_oom_at_micro_batch_1_switches_on_gradient_checkpointing(config, capsys):
    limited = MemoryLimitedNet(max_batch=0)  # nothing fits without checkpointing
    t = GlobalStage(dataclasses.replace(config, batch_size=2, max_updates=2), limited)
    p = Progress()
    train_one_epoch(t, p, after_update=lambda p: p.updates >= 2)
    assert p.updates == 2 and p.micro_batch == 1 and p.oom_checkpointing and limited.checkpointing
    assert "gradient checkpointing switched on" in capsys.readouterr().out
    state = p.state_dict()  # saved in checkpoints: a resumed run starts with the settings that fit
    assert state["micro_batch"] == 1 and state["oom_checkpointing"] is True


def test_oom_that_nothing_fixes_stops_with_remedies_and_keeps_the_last_checkpoint(config):
    # epoch 1 fits; from the second epoch on, nothing does
    limited = MemoryLimitedNet(max_batch=0, after_calls=2, fits_checkpointed=False)
    config = dataclasses.replace(config, num_workers=2, mixed_precision=False)
    with pytest.raises(OutOfMemoryStop) as stop:
        train(dataclasses.replace(config, num_workers=0), limited)
    message = str(stop.value)
    run_dir = config.output_dir + "/run"
    assert "Checkpoints kept in" in message and run_dir in message and "last.pt" in message
    assert "--image_size 16 16" in message and "--model hrnet_w18" in message and "--mixed_precision" in message
    # the checkpoint of epoch 1 is untouched and loads
    state = torch.load(f"{run_dir}/last.pt", weights_only=False)
    assert state["epoch"] == 1
    assert "--num_workers 1" in remedies(config)  # halved from the run's 2


def test_cli_reports_an_unfixable_oom_as_one_error_line(config, monkeypatch, capsys):
    import cephalo.engine.run.pipeline as stages

    real_train = stages.train  # what cephalo train runs
    monkeypatch.setattr(stages, "train", lambda c, model=None, given=None: real_train(
        c, MemoryLimitedNet(max_batch=0, fits_checkpointed=False), given))
    argv = ["--dataset_path", config.dataset_path, "--image_size", "32", "32", "--head_stride", "4", "--batch_size",
            "2", "--epochs", "1", "--num_workers", "0", "--no_progress", "--output_dir", config.output_dir,
            "--run_name", "cli", "--cache_dir", config.cache_dir]
    assert train_main(argv) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: out of GPU memory even at micro-batch 1") and "Traceback" not in err
    assert "No checkpoint had been written yet" in err


def test_shrink_sequence():
    c = TrainConfig(batch_size=8, gradient_accumulation_steps=1)
    assert shrink(c, 8, False, True)[:2] == (4, False)
    assert shrink(c, 3, False, True)[:2] == (1, False)
    assert shrink(c, 1, False, True)[:2] == (1, True)
    with pytest.raises(OutOfMemoryStop):
        shrink(c, 1, True, True)
    with pytest.raises(OutOfMemoryStop):
        shrink(c, 1, False, False)  # a model without gradient checkpointing


def test_validation_out_of_memory_goes_on_in_smaller_parts(config, capsys):
    torch.manual_seed(0)
    limited = MemoryLimitedNet(max_batch=4, eval_max_batch=1)
    t = GlobalStage(dataclasses.replace(config, val_fraction=0.4), limited)  # 4 validation images, one batch
    reference = validate_with(t, Progress(), limited.net)  # the same weights, no memory limit
    p = Progress()
    metrics = validate_with(t, p, limited)
    assert limited.eval_batches == [1, 1, 1, 1] and p.val_micro_batch == 1
    assert "1 images per forward pass" in capsys.readouterr().out
    assert metrics["val_mre_mm"] == pytest.approx(reference["val_mre_mm"], rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)



def validate_with(stage: GlobalStage, p: Progress, model: nn.Module) -> dict:
    """The stage's validation of ``model`` in place of its own."""
    real = stage.parts
    stage.parts = dataclasses.replace(real, eval_forward=model)
    try:
        return stage.validate(p)
    finally:
        stage.parts = real
