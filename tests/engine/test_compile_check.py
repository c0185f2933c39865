"""The compile check at the start of training: a compiled model whose accumulated gradients are wrong is found and
not used; a right one is kept; the check leaves no trace in the run."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

import cephalo.engine.runtime.compile as compile_module
from cephalo.artifact.checkpoint import load_checkpoint
from cephalo.engine.checks.compile_check import check_compiled_accumulation
from cephalo.engine.run.pipeline import train
from cephalo.engine.stages.global_stage import GlobalStage
from tests.helpers import TinyHeatmapNet


class FakeCompiled(nn.Module):
    """Stands in for ``torch.compile(model)``: the same forward, or (``drops_accumulated``) one whose backward loses
    the gradients of the earlier micro-batches of an accumulation group, the kind of bug CUDA graphs have had."""

    def __init__(self, model: nn.Module, drops_accumulated: bool):
        super().__init__()
        self.inner, self.drops_accumulated = [model], drops_accumulated

    def forward(self, x):
        if self.drops_accumulated:
            for p in self.inner[0].parameters():
                p.grad = None
        return self.inner[0](x)


def fake_compile(monkeypatch, drops_accumulated: bool) -> list[FakeCompiled]:
    made = []

    def compile_(model, mode="default"):
        made.append(FakeCompiled(model, drops_accumulated))
        return made[-1]

    monkeypatch.setattr(compile_module.torch, "compile", compile_)
    return made


def accumulating(config, steps=2):
    return dataclasses.replace(config, use_compile=True, batch_size=2, gradient_accumulation_steps=steps, epochs=1,
                               use_ema=True)


def test_wrong_accumulated_gradients_fall_back_to_eager(tiny_config, monkeypatch, capsys):
    fake_compile(monkeypatch, drops_accumulated=True)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"wrong accumulated gradients.*eager mode.*cephalo doctor"):
        train(accumulating(tiny_config), TinyHeatmapNet())
    assert "compile check failed" in capsys.readouterr().out
    monkeypatch.undo()
    eager = dataclasses.replace(accumulating(tiny_config), use_compile=False, run_name="eager")
    torch.manual_seed(0)  # the same initial weights
    train(eager, TinyHeatmapNet())
    fell_back = load_checkpoint(f"{tiny_config.output_dir}/run/last.pt")
    plain = load_checkpoint(f"{tiny_config.output_dir}/eager/last.pt")
    for key in ("model", "ema"):  # the whole run trained eager, the check left nothing behind
        a, b = fell_back[key], plain[key]
        a, b = (a.get("module", a), b.get("module", b))
        assert all(torch.equal(a[k], b[k]) for k in a), key


def test_one_micro_batch_cannot_show_the_accumulation_bug(tiny_config, monkeypatch, capsys):
    """The same broken compile passes with one micro-batch per update: the check needs the whole group."""
    fake_compile(monkeypatch, drops_accumulated=True)
    t = GlobalStage(accumulating(tiny_config, steps=1), TinyHeatmapNet())
    assert check_compiled_accumulation(t).startswith("compile check passed")


def test_a_right_compile_is_kept_and_leaves_no_trace(tiny_config, monkeypatch):
    made = fake_compile(monkeypatch, drops_accumulated=False)
    t = GlobalStage(accumulating(tiny_config), TinyHeatmapNet())
    before = {k: v.clone() for k, v in t.parts.raw_model.state_dict().items()}
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        note = check_compiled_accumulation(t)
    assert note.startswith("compile check passed") and "2 x 2 images" in note and "cosine 1.0" in note
    assert t.parts.model.compiled and len(made) == 2  # the model and its EMA copy, both still compiled
    assert all(torch.equal(before[k], v) for k, v in t.parts.raw_model.state_dict().items())
    assert all(p.grad is None for p in t.parts.raw_model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    assert t.parts.scheduler.last_epoch == 0 and t.parts.ema.updates == 0  # not an update


def test_the_check_runs_once_not_on_resume(tiny_config, monkeypatch):
    import cephalo.engine.run.fit as trainer

    calls = []
    monkeypatch.setattr(trainer, "check_compiled_accumulation", lambda t: calls.append(t) or None)
    train(dataclasses.replace(tiny_config, epochs=1), TinyHeatmapNet())
    train(dataclasses.replace(tiny_config, epochs=2, resume=f"{tiny_config.output_dir}/run/last.pt"), TinyHeatmapNet())
    assert len(calls) == 1


def test_uncompiled_runs_are_not_checked(tiny_config):
    assert check_compiled_accumulation(GlobalStage(tiny_config, TinyHeatmapNet())) is None


def test_the_local_stage_compiles_and_is_checked_too(two_stage_config, monkeypatch, capsys):
    """--use_compile with --refine_from: the local model trains compiled (its EMA copy validates compiled), after
    the same check over one accumulation group of patches; a broken compile falls back to eager."""
    config = dataclasses.replace(two_stage_config, refine=False, local_epochs=1, local_accumulation_steps=2,
                                 use_ema=True)
    torch.manual_seed(0)
    source = train(dataclasses.replace(config, run_name="source", epochs=1)).run_dir / "best.pt"
    made = fake_compile(monkeypatch, drops_accumulated=False)
    train(dataclasses.replace(config, refine_from=str(source), use_compile=True, run_name="kept"))
    assert "local compile check passed" in capsys.readouterr().out and len(made) == 2  # the model and its EMA
    fake_compile(monkeypatch, drops_accumulated=True)
    with pytest.warns(UserWarning, match=r"wrong accumulated gradients.*the local stage continues in eager mode"):
        train(dataclasses.replace(config, refine_from=str(source), use_compile=True, run_name="broken"))
    assert "local compile check failed" in capsys.readouterr().out
