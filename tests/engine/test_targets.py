"""Targets of a physical size: --sigma_mm is converted once per run into heatmap pixels (the training images'
median mm per letterbox pixel, times the stride), so a run at a larger input sees the same anatomy per target;
both stages; stored in the model's description; --sigma keeps meaning heatmap pixels."""

from __future__ import annotations

import dataclasses

import pytest

from cephalo.artifact.checkpoint import GLOBAL, LOCAL, read_checkpoint
from cephalo.engine.run.pipeline import train
from cephalo.engine.stages.local_stage import LOCAL_STRIDE
from tests.helpers import TinyHeatmapNet


def trained_spec(config, stage: str = GLOBAL):
    result = train(config, TinyHeatmapNet() if stage == GLOBAL and not config.refine else None)
    return read_checkpoint(result.run_dir / "best.pt").stage(stage).spec


def test_a_sigma_in_mm_is_the_same_anatomy_at_every_input_size(tiny_config, capsys):
    """40 x 32 images of 0.1 mm letterboxed to 32² (x 0.8: 0.125 mm per pixel) and 64² (x 1.6: 0.0625 mm), stride 4:
    1 mm is 2 heatmap pixels at 32² and 4 at 64²."""
    small = trained_spec(dataclasses.replace(tiny_config, epochs=1, sigma_mm=1.0, run_name="s32"))
    assert small.sigma == pytest.approx(2.0) and small.sigma_mm == 1.0
    assert "sigma 1 mm = 2.00 heatmap px" in capsys.readouterr().out
    large = trained_spec(dataclasses.replace(tiny_config, epochs=1, sigma_mm=1.0, image_size=(64, 64),
                                             run_name="s64"))
    assert large.sigma == pytest.approx(4.0)


def test_sigma_keeps_meaning_heatmap_pixels_and_says_what_that_is_in_mm(tiny_config, capsys):
    spec = trained_spec(dataclasses.replace(tiny_config, epochs=1))
    assert spec.sigma == 2.0 and spec.sigma_mm is None and "sigma_mm" not in spec.to_dict()  # as written before
    assert "sigma 2 heatmap px = 1.00 mm" in capsys.readouterr().out


def test_sigma_and_sigma_mm_together_are_one_error(tiny_config):
    with pytest.raises(ValueError, match="--sigma 3 and --sigma_mm 1 both set the targets' width: give one"):
        dataclasses.replace(tiny_config, sigma=3.0, sigma_mm=1.0).check()


def test_a_run_resumed_with_another_sigma_mm_is_refused(tiny_config):
    result = train(dataclasses.replace(tiny_config, epochs=1, sigma_mm=1.0), TinyHeatmapNet())
    with pytest.raises(ValueError, match=r"--sigma_mm 1.5 \(the run in .* was trained with 1.0\)"):
        train(dataclasses.replace(tiny_config, epochs=2, sigma_mm=1.5, resume=str(result.run_dir)), TinyHeatmapNet(),
              given={"sigma_mm", "epochs"})  # as the command line says it


def test_the_local_stage_converts_sigma_mm_at_its_patch_scale(two_stage_config):
    config = dataclasses.replace(two_stage_config, sigma_mm=0.8, local_epochs=1, epochs=1)
    spec = trained_spec(config, LOCAL)
    assert spec.sigma == pytest.approx(0.8 / (config.patch_mm * LOCAL_STRIDE)) and spec.sigma_mm == 0.8
