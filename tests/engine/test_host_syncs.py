"""The training step's host syncs, counted on the CPU for each stage: only the intended ones (the finiteness check
per update, the progress line every --log_every updates), no value read and no tensor made from host data anywhere
else."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cephalo.artifact.checkpoint import GLOBAL, LOCAL
from cephalo.engine.run.pipeline import train
from cephalo.engine.runtime.host_sync import HostReads, intended_sync
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.stages.local_stage import LocalStage
from cephalo.engine.step.loop import train_one_epoch
from tests.helpers import TinyHeatmapNet


@pytest.mark.parametrize("stage", [GLOBAL, LOCAL])
def test_the_step_reads_the_host_only_where_it_says_so(two_stage_config, stage):
    # every path of the step: augmentation, bf16 autocast, channels_last, accumulation, EMA, the progress line, a
    # loader worker
    config = dataclasses.replace(two_stage_config, refine=False, augmentation="full", local_augmentation="full",
                                 mixed_precision=True, channels_last=True, use_ema=True, batch_size=1,
                                 gradient_accumulation_steps=2, local_batch=1, local_accumulation_steps=2,
                                 log_every=2, progress=True, num_workers=1, persistent_workers=False)
    if stage == GLOBAL:
        t = GlobalStage(config, TinyHeatmapNet())
    else:
        source = train(dataclasses.replace(config, run_name="source", epochs=1, progress=False)).run_dir
        t = LocalStage(config, source / "best.pt")
    p = t.new_progress()
    with HostReads() as reads:
        train_one_epoch(t, p, after_update=lambda p: p.updates >= 4)
    assert p.updates == 4
    assert reads.unintended() == [], reads.unintended()
    assert reads.count() == {("cephalo.engine.runtime.finite.all_finite", "finiteness check"): 4,
                             ("cephalo.engine.step.stats.show_update", "progress line"): 2}


def test_host_reads_finds_an_unmarked_sync_and_a_host_made_tensor():
    def careless(x: torch.Tensor) -> float:
        scale = torch.tensor([2.0, 3.0], device=x.device)  # a blocking copy on a GPU
        return float((x * scale).sum())  # a host read

    with HostReads() as reads:
        careless(torch.ones(2))
        with intended_sync("marked"):
            torch.ones(2).sum().item()
    kinds = [(r.kind, r.where.rsplit(".", 1)[-1], r.intended) for r in reads.reads]
    assert kinds == [("tensor from host data", "careless", None), ("host read", "careless", None),
                     ("host read", "test_host_reads_finds_an_unmarked_sync_and_a_host_made_tensor", "marked")]
