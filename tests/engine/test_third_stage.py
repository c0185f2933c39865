"""The stage interface is real: a third stage, defined here in a few lines, trains through the same fit loop after
the global stage, and gets its guarantees without a line of engine code: SIGTERM writes its recovery file and
prints the resume command, and ``--resume`` finds it (the furthest stage), goes on in it and ends with the weights
of an uninterrupted run."""

from __future__ import annotations

import dataclasses
import os
import signal

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cephalo.engine.step.loop as loop
from cephalo.artifact.checkpoint import StageSpec, load_checkpoint
from cephalo.engine.run.pipeline import GLOBAL_STAGE, StageKind, run_stages
from cephalo.engine.stages.setup import build_parts, place_model, runtime
from cephalo.engine.step.data import EpochSampler
from cephalo.engine.step.stage import TrainingStage
from tests.helpers import TinyHeatmapNet


class ToyStage(TrainingStage):
    """A linear model fitted to 8 random samples, 3 epochs of 4 updates after the global stage."""

    name, label, files = "toy", "toy ", "toy_"

    def __init__(self, run_config, run_dir, time_budget, model):
        self.run_config, notes = run_config, []
        self.config = c = dataclasses.replace(run_config, epochs=3, batch_size=2, time_budget=time_budget)
        rt = runtime(c, notes)
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
        self.sampler = EpochSampler(8, c.seed, rank=rt.dist.rank, world_size=rt.dist.world_size)
        self.loader = DataLoader(TensorDataset(self.x, self.y, torch.arange(8)), batch_size=2, sampler=self.sampler)
        self.parts = build_parts(c, place_model(c, nn.Linear(4, 1), rt, notes), rt, len(self.loader), notes)
        self.data_note, self.notes = "8 random samples", tuple(notes)

    def loss(self, model, batch, augment=True):
        x, y = batch
        return (model(x) - y).square().mean()

    @torch.no_grad()
    def validate(self, progress):
        return {"val_mre_mm": float((self.parts.eval_forward(self.x) - self.y).abs().mean())}

    def spec(self, metrics):
        return StageSpec("toy", ("S",), (4, 1), stride=1, sigma=1.0)

    def fixed_group(self):
        return [((self.x[:2], self.y[:2]), 1.0)]

    def describe(self):
        return [f"toy stage: {self.data_note}"]

    def validation_text(self, metrics):
        return f" | error {metrics['val_mre_mm']:.3f}"


STAGES = [GLOBAL_STAGE, StageKind("toy", ToyStage)]


def test_a_third_stage_trains_stops_and_resumes_through_the_same_loop(tiny_config, monkeypatch, capsys):
    config = dataclasses.replace(tiny_config, use_ema=True)
    torch.manual_seed(0)
    run_stages(dataclasses.replace(config, run_name="full"), STAGES, TinyHeatmapNet())
    real_update, toy_updates = loop.optimizer_update, []

    def sigterm_at_toy_update_6(parts):
        if isinstance(parts.raw_model, nn.Linear):
            toy_updates.append(1)
            if len(toy_updates) == 6:
                os.kill(os.getpid(), signal.SIGTERM)
        return real_update(parts)

    monkeypatch.setattr(loop, "optimizer_update", sigterm_at_toy_update_6)
    torch.manual_seed(0)
    result = run_stages(config, STAGES, TinyHeatmapNet())
    monkeypatch.setattr(loop, "optimizer_update", real_update)
    run = result.run_dir
    out = capsys.readouterr().out
    assert "toy stage: 8 random samples" in out and "toy epoch   1:" in out and "| error " in out
    assert result.interrupted == "SIGTERM" and f"continue with: cephalo train --resume {run}" in out
    assert load_checkpoint(run / "toy_recovery.pt")["progress"]["updates"] == 6

    run_stages(dataclasses.replace(config, resume=str(run)), STAGES, TinyHeatmapNet())
    assert f"resumed from {run / 'toy_recovery.pt'} at toy epoch 2, update 6" in capsys.readouterr().out
    full, resumed = (load_checkpoint(f"{config.output_dir}/{name}/toy_last.pt") for name in ("full", "run"))
    assert full["training_stage"] == resumed["training_stage"] == "toy" and resumed["updates"] == 12
    for key in full["model"]:
        torch.testing.assert_close(full["model"][key], resumed["model"][key], rtol=0, atol=0)
        torch.testing.assert_close(full["ema"]["module"][key], resumed["ema"]["module"][key], rtol=0, atol=0)
