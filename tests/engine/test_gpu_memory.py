"""--vram_budget_gb and --auto_micro_batch: the choice logic on measured figures, and what a CPU run says."""

import dataclasses

import pytest
import torch

from cephalo.engine.config import parse_args
from cephalo.engine.runtime.gpu_memory import apply_vram_budget, pick_micro_batch
from cephalo.engine.stages.global_stage import GlobalStage
from tests.helpers import TinyHeatmapNet

GiB = 2**30


def test_pick_the_largest_divisor_that_fits_with_margin():
    peaks = {1: 3 * GiB, 2: 5 * GiB, 4: 7 * GiB, 8: 12 * GiB}
    best, measured = pick_micro_batch(8, peaks.get, budget_bytes=8 * GiB)
    assert best == 2  # 7 GiB for 4 is above 8 GiB less 15 %
    assert measured == [(1, 3 * GiB), (2, 5 * GiB), (4, 7 * GiB)]  # stops measuring at the first that does not fit
    assert pick_micro_batch(8, peaks.get, budget_bytes=80 * GiB)[0] == 8
    assert pick_micro_batch(6, lambda b: b * GiB, budget_bytes=10 * GiB)[0] == 6  # divisors 1, 2, 3, 6
    oom_at_4 = {1: GiB, 2: 2 * GiB, 4: None}
    assert pick_micro_batch(8, oom_at_4.get, budget_bytes=80 * GiB) == (2, [(1, GiB), (2, 2 * GiB), (4, None)])
    assert pick_micro_batch(8, lambda b: None, budget_bytes=GiB)[0] == 1  # nothing fits: recovery takes over


def test_auto_preset_keeps_eight_images_per_update_and_explicit_flags_win():
    c = parse_args(["--preset", "auto"])
    assert c.auto_micro_batch and c.mixed_precision and c.use_ema and c.batch_size * c.gradient_accumulation_steps == 8
    assert parse_args(["--preset", "auto", "--gradient_accumulation_steps", "16"]).gradient_accumulation_steps == 16


def test_on_cpu_the_options_say_what_they_did(tiny_config, capsys):  # noqa: F811
    t = GlobalStage(dataclasses.replace(tiny_config, auto_micro_batch=True, vram_budget_gb=8.0), TinyHeatmapNet())
    assert any("--vram_budget_gb 8 ignored" in n for n in t.notes)
    assert any("--auto_micro_batch measures GPU memory; on cpu the micro-batch stays 2" in n for n in t.notes)
    assert not t.config.auto_micro_batch  # resolved: a resumed run keeps it
    assert "ignored" in apply_vram_budget(torch.device("cpu"), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_micro_batch_measures_on_cuda(tiny_config):
    config = dataclasses.replace(tiny_config, device="cuda", auto_micro_batch=True, batch_size=1,
                                 gradient_accumulation_steps=4, vram_budget_gb=4.0)
    t = GlobalStage(config, TinyHeatmapNet())
    assert t.config.batch_size == 4 and t.config.gradient_accumulation_steps == 1  # a tiny net fits
    assert any("measured peaks 1:" in n for n in t.notes) and any("capped at 4 GiB" in n for n in t.notes)
