"""The checkpoint schema: one reader and writer, a format version that is read, old files that keep working, and
files that are not cephalo checkpoints refused in one line without running pickled code."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cephalo.artifact.checkpoint import (
    CHECKPOINT_VERSION,
    StageSpec,
    build_state,
    load_checkpoint,
    read_stage,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cephalo.cli.main import main
from cephalo.models.registry import register_model, unregister
from tests.helpers import TinyBackbone, TinyHead, flip_byte, write_csv_dataset

V1_FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoint_v1_tiny.pt"


@pytest.fixture
def tiny_fixture_model():
    """The fixture's model name, registered for the test (tests/fixtures/README.md)."""
    register_model("tiny_fixture", backbone=lambda in_chans=1: TinyBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyHead(num_landmarks))
    yield
    unregister("tiny_fixture")


def test_a_version_1_checkpoint_is_read_as_one_global_stage():
    state = load_checkpoint(V1_FIXTURE)
    assert state["version"] == CHECKPOINT_VERSION and "model_name" not in state
    stage = read_stage(state, V1_FIXTURE)
    assert stage.spec == StageSpec("tiny_fixture", ("S", "N", "Me"), (32, 32), stride=4, sigma=2.0)
    assert stage.weights_kind == "ema" and set(stage.weights) == set(state["ema"]["module"])
    assert state["progress"]["epoch"] == 2 and state["tracker"]["monitor"] == "val_mre_mm"
    set_rng_state(state["rng"])  # version 1 kept numpy's own tuple: still restores


def test_a_version_1_checkpoint_keeps_predicting_and_exporting(tiny_fixture_model, tmp_path, capsys):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=4, size=(40, 32))
    checkpoint = tmp_path / "best.pt"
    shutil.copy(V1_FIXTURE, checkpoint)
    assert main(["predict", "--checkpoint", str(checkpoint), str(csv_path), "--out", str(tmp_path / "pred"),
                 "--num_workers", "0", "--no_progress", "--device", "cpu"]) == 0
    assert "tiny_fixture, 3 landmarks, input 32x32" in capsys.readouterr().out
    header = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()[0]
    assert header == "image,spacing_mm,S_x,S_y,N_x,N_y,Me_x,Me_y"
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "self-check" in capsys.readouterr().out


def test_state_round_trip_loads_with_weights_only(tmp_path):
    spec = StageSpec("hrnet_w18_small", ["S", "N"], [64, 48], stride=2, sigma=2.0)
    model = {"w": torch.randn(3, 3)}
    state = build_state(stage=spec, model=model, ema=None, optimizer={}, scheduler={}, scaler={},
                        progress={"epoch": 1, "updates": 7}, tracker={"monitor": "val_loss"}, metrics={"a": 1.0},
                        config={"image_size": (64, 48)})
    save_checkpoint(tmp_path / "c.pt", state)
    torch.load(tmp_path / "c.pt", weights_only=True)  # no pickled classes at all, numpy's RNG state included
    loaded = load_checkpoint(tmp_path / "c.pt")
    stage = read_stage(loaded, "c.pt")
    assert stage.spec == spec and stage.spec.landmark_names == ("S", "N") and stage.spec.heatmap_size == (32, 24)
    assert stage.weights_kind == "model" and torch.equal(stage.weights["w"], model["w"])
    assert loaded["epoch"] == 1 and loaded["updates"] == 7


def test_rng_state_restores_every_generator():
    np.random.seed(3)
    torch.manual_seed(3)
    saved = rng_state()
    expected = (np.random.rand(), torch.rand(1).item())
    np.random.rand(5)
    set_rng_state(saved)
    assert (np.random.rand(), torch.rand(1).item()) == expected


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {"version": 2, "model": {}}


@pytest.mark.parametrize("kind", ["timm weights", "garbage", "pickled code", "newer format", "no stages"])
def test_files_that_are_not_usable_checkpoints_give_one_error_line(kind, tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    if kind == "timm weights":
        torch.save({"conv1.weight": torch.zeros(1)}, path)
        expected = "not a cephalo checkpoint"
    elif kind == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip")
        expected = "not a readable cephalo checkpoint"
    elif kind == "pickled code":
        with open(path, "wb") as f:
            pickle.dump(_Payload(), f)
        expected = "not a readable cephalo checkpoint"
    elif kind == "newer format":
        torch.save({"version": CHECKPOINT_VERSION + 1, "model": {}}, path)
        expected = "written by a newer cephalo"
    else:
        torch.save({"version": CHECKPOINT_VERSION, "model": {}}, path)
        expected = "has no global model"
    image = tmp_path / "a.png"
    write_csv_dataset(tmp_path / "d", n=1)
    shutil.copy(tmp_path / "d" / "images" / "000.png", image)
    assert main(["predict", "--checkpoint", str(path), str(image), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and expected in err and err.count("\n") == 1, err
    assert not _Payload.ran  # weights_only: the pickle's code was never run


def test_predict_with_tta_runs_the_views(tiny_fixture_model, tmp_path, capsys):
    from cephalo.evaluation.predictions import read_predictions

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=4, size=(40, 32))
    common = ["--checkpoint", str(V1_FIXTURE), str(csv_path), "--num_workers", "0", "--no_progress", "--device", "cpu"]
    assert main(["predict", *common, "--out", str(tmp_path / "plain")]) == 0
    assert main(["predict", *common, "--out", str(tmp_path / "tta"), "--tta"]) == 0
    assert "test-time augmentation: 7 global view(s), 1 local start(s)" in capsys.readouterr().out
    _, plain = read_predictions(tmp_path / "plain" / "predictions.csv")
    _, tta = read_predictions(tmp_path / "tta" / "predictions.csv")
    assert plain.keys() == tta.keys() and all(np.isfinite(tta[k]).all() for k in tta)
    assert any(abs(plain[k] - tta[k]).max() > 0 for k in plain)  # the views' geometry: tests/inference/test_tta.py


V2_FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoint_v2_tiny.pt"
V3_FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoint_v3_two_stage_tiny.pt"


@pytest.fixture
def old_fixture_models(monkeypatch):
    """The models of the format-2 and format-3 fixtures (tests/fixtures/README.md), registered for the test."""
    import cephalo.engine.stages.local_stage as local_stage
    from cephalo.engine.config import TrainConfig
    from tests.helpers import TinyUpHead

    monkeypatch.setattr(TrainConfig, "check", lambda self: None)  # tiny model names are not the flag's choices
    monkeypatch.setattr(local_stage, "ONLY_IF_BETTER", False)  # as when the fixtures were written
    register_model("tiny_fixture", backbone=lambda in_chans=1: TinyBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyHead(num_landmarks))
    register_model("tiny_fixture_local", backbone=lambda in_chans=1: TinyBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyUpHead(num_landmarks))
    yield
    unregister("tiny_fixture")
    unregister("tiny_fixture_local")


@pytest.mark.parametrize("fixture, stages", [(V2_FIXTURE, "global"), (V3_FIXTURE, "global and local")])
def test_format_2_and_3_checkpoints_of_the_old_engine_predict_and_export(old_fixture_models, tmp_path, capsys,
                                                                         fixture, stages):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=4, size=(80, 60))
    checkpoint = tmp_path / "best.pt"
    shutil.copy(fixture, checkpoint)
    assert main(["predict", "--checkpoint", str(checkpoint), str(csv_path), "--out", str(tmp_path / "pred"),
                 "--num_workers", "0", "--no_progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "tiny_fixture, 3 landmarks, input 32x32" in out and ("local stage" in out) == (stages != "global"), out
    rows = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "image,spacing_mm,S_x,S_y,N_x,N_y,Me_x,Me_y" and len(rows) == 5
    pytest.importorskip("onnxruntime")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "self-check" in capsys.readouterr().out
    assert (tmp_path / "m.local.onnx").is_file() == (stages != "global")


@pytest.mark.parametrize("folder, stage", [("run_global_stopped", "global"), ("run_local_stopped", "local")])
def test_a_run_folder_stopped_by_the_old_engine_resumes(old_fixture_models, tmp_path, capsys, folder, stage):
    """Written by the engine before 2026-12-05 and stopped (Ctrl+C) mid-stage: its global stage in the middle of
    epoch 2 (recovery.pt), or its local stage after local epoch 1 (local_last.pt). The run's dataset is gone; the
    same images at another path resume it, to the end of both stages."""
    from cephalo.engine.config import TrainConfig
    from cephalo.engine.run.pipeline import train

    run = tmp_path / "runs" / "old"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / folder, run)
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(80, 60))
    config = TrainConfig(resume=str(run), dataset_path=str(csv_path), cache_dir=str(tmp_path / "cache"),
                         device="cpu", progress=False, num_workers=0)
    result = train(config, given={"resume", "dataset_path", "cache_dir", "device", "progress", "num_workers"})
    out = capsys.readouterr().out
    resumed_from = "recovery.pt at epoch 2, update 6" if stage == "global" else "local_last.pt at local epoch 2, update 4"
    assert f"resumed from {run / resumed_from}" in out and "the run's dataset" in out and "is gone" in out
    assert result.best_written and not result.interrupted
    local = load_checkpoint(run / "local_last.pt")
    assert local["progress"]["epoch"] == 2 and local["progress"]["updates"] == 8  # the local stage ran to its end
    assert set(load_checkpoint(run / "best.pt")["stages"]) == {"global", "local"}


@pytest.fixture
def trained_run(tiny_config, tmp_path):
    import dataclasses

    from cephalo.engine.run.pipeline import train
    from tests.helpers import TinyHeatmapNet

    result = train(dataclasses.replace(tiny_config, epochs=1, recovery_interval=1), TinyHeatmapNet())
    return result.run_dir


@pytest.mark.parametrize("where", ["zip header", "central directory", "tensor data"])
def test_a_flipped_byte_in_a_checkpoint_is_found_by_every_reader(trained_run, tiny_config, tmp_path, capsys, where):
    """Predict and export stop with one line naming the damaged best.pt; --resume skips a damaged last.pt with a
    warning and goes on from the intact recovery.pt: never a traceback, never silently wrong weights."""
    import dataclasses

    from cephalo.engine.run.pipeline import train
    from tests.helpers import TinyHeatmapNet

    best, last = trained_run / "best.pt", trained_run / "last.pt"
    flip_byte(best, where)
    with pytest.raises(ValueError, match="damaged checkpoint|not a readable cephalo checkpoint"):
        load_checkpoint(best)
    image = next((Path(tiny_config.dataset_path).parent / "images").iterdir())
    for argv in (["predict", "--checkpoint", str(best), str(image), "--out", str(tmp_path / "p"), "--device", "cpu"],
                 ["export", "--checkpoint", str(best), "--out", str(tmp_path / "m.onnx")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {best}: ") and err.count("\n") == 1 and "Traceback" not in err, err
    flip_byte(last, where)
    with pytest.warns(UserWarning, match=r"skipping .*last.pt"):
        result = train(dataclasses.replace(tiny_config, epochs=2, resume="auto"), TinyHeatmapNet())
    assert result.metrics["epoch"] == 2 and "resumed from" in capsys.readouterr().out


def test_every_checkpoint_carries_a_digest_of_its_contents(trained_run):
    from cephalo.artifact.checkpoint import state_digest

    for name in ("best.pt", "last.pt", "recovery.pt"):
        state = torch.load(trained_run / name, weights_only=True)
        assert state["digest"].startswith("crc32:") and state["digest"] == state_digest(state)
