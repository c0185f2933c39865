"""cephalo train --refine / --refine_from: a local stage on top of the global model, in the same run folder, its
two-stage best.pt used by predict, and a resumed local stage ending with the uninterrupted weights."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import cephalo.engine.run.budget as budget
import cephalo.engine.stages.local_stage as local_stage
from cephalo.artifact.checkpoint import GLOBAL, LOCAL, load_checkpoint, read_stage
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.pipeline import train
from cephalo.inference.inputs import resolve_inputs
from cephalo.inference.outputs import predict_to_folder
from cephalo.inference.torch_predictor import TorchPredictor
from tests.helpers import flip_byte, interrupted_at_epoch, raise_on_call


@pytest.fixture
def config(two_stage_config):
    return dataclasses.replace(two_stage_config, local_augmentation="light")  # the local stage's default


def interrupted_in_local_epoch_2(config: TrainConfig, monkeypatch) -> None:
    """Train ``config`` from seed 0 and stop it like Ctrl+C at its 5th local update: the first of local epoch 2
    (8 training images / 2 per update: 4 updates per local epoch)."""
    real_loss = local_stage.local_loss
    monkeypatch.setattr(local_stage, "local_loss", raise_on_call(real_loss, 5))
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(local_stage, "local_loss", real_loss)


def test_refine_trains_both_stages_and_predict_uses_them(config, tmp_path, capsys, monkeypatch):
    result = train(config)
    out = capsys.readouterr().out
    run = result.run_dir
    assert "local stage: tiny_local, 3 patches of 32 px at 0.2 mm/px (6.4 mm)" in out and "refined MRE" in out
    best = load_checkpoint(run / "best.pt")
    assert best["version"] == 3 and set(best["stages"]) == {GLOBAL, LOCAL} and best["training_stage"] == LOCAL
    assert read_stage(best, run / "best.pt", LOCAL).spec.mm_per_px == 0.2
    assert read_stage(best, run / "best.pt", GLOBAL).weights_kind == "frozen"
    assert (run / "local_last.pt").is_file() and len((run / "local_metrics.jsonl").read_text().splitlines()) == 2

    predictor = TorchPredictor(run / "best.pt", device="cpu", mixed_precision=False)
    assert predictor.patch_mm == 0.2
    calls = []
    refine = predictor.refine
    monkeypatch.setattr(predictor, "refine", lambda landmarks, scaled: calls.append(len(scaled)) or refine(landmarks,
                                                                                                          scaled))
    items = resolve_inputs([config.dataset_path])[0]
    summary = predict_to_folder(predictor, items, tmp_path / "preds", num_workers=0, progress=False)
    assert sum(calls) == len(items) == len(summary.predicted)
    global_only = TorchPredictor(run / "best.pt", device="cpu", mixed_precision=False)
    global_only.local_spec = None  # the same checkpoint without its local stage
    plain = predict_to_folder(global_only, items, tmp_path / "plain", num_workers=0, progress=False)
    refined_csv, plain_csv = (summary.csv_path.read_text(), plain.csv_path.read_text())
    assert refined_csv != plain_csv  # the local stage moved the landmarks


def test_a_resumed_local_stage_ends_with_the_uninterrupted_weights(config, monkeypatch):
    torch.manual_seed(0)
    train(dataclasses.replace(config, run_name="full"))
    interrupted_in_local_epoch_2(dataclasses.replace(config, run_name="part"), monkeypatch)
    part_dir = f"{config.output_dir}/part"
    assert load_checkpoint(f"{part_dir}/local_last.pt")["progress"]["epoch"] == 1
    train(dataclasses.replace(config, run_name="part", resume=part_dir))
    a = load_checkpoint(f"{config.output_dir}/full/local_last.pt")
    b = load_checkpoint(f"{part_dir}/local_last.pt")
    assert a["progress"] == b["progress"] and a["progress"]["epoch"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)


@pytest.mark.parametrize("where", ["central directory", "tensor data"])
def test_damaged_local_stage_files_are_skipped_and_a_damaged_source_stops(config, monkeypatch, capsys, where):
    """Fault injection in the local stage's files: a damaged local_recovery.pt is skipped by --resume with a
    warning (it goes on from local_last.pt and ends like an uninterrupted run); a damaged global checkpoint given to
    --refine_from stops before any training, naming it."""
    config = dataclasses.replace(config, recovery_interval=1)  # a local_recovery.pt after every update
    interrupted_in_local_epoch_2(config, monkeypatch)
    run = Path(config.output_dir) / "run"
    assert (run / "local_recovery.pt").is_file() and (run / "local_last.pt").is_file()
    flip_byte(run / "local_recovery.pt", where)
    with pytest.warns(UserWarning, match=r"skipping .*local_recovery.pt"):
        result = train(dataclasses.replace(config, resume=str(run)))
    assert load_checkpoint(result.run_dir / "local_last.pt")["progress"]["epoch"] == 2
    assert "resumed from" in capsys.readouterr().out

    source = run / "best.pt"
    flip_byte(source, where)
    with pytest.raises(ValueError, match=rf"{re.escape(str(source))}: .*damaged checkpoint|not a readable"):
        train(dataclasses.replace(config, refine=False, refine_from=str(source), run_name="refined"))
    assert not (Path(config.output_dir) / "refined" / "local_last.pt").exists()


def test_refine_from_adds_a_local_stage_to_an_existing_global_model(config, capsys):
    train(dataclasses.replace(config, refine=False, run_name="global"))
    source = f"{config.output_dir}/global/best.pt"
    capsys.readouterr()
    result = train(dataclasses.replace(config, refine=False, refine_from=source, run_name="refined"))
    best = load_checkpoint(result.run_dir / "best.pt")
    assert set(best["stages"]) == {GLOBAL, LOCAL}
    for key, value in read_stage(load_checkpoint(source), source).weights.items():  # the global model, unchanged
        torch.testing.assert_close(best["frozen"][GLOBAL][key], value, rtol=0, atol=0)
    lines = capsys.readouterr().out.splitlines()
    assert not [line for line in lines if line.startswith("epoch ")]  # no global training
    assert len([line for line in lines if line.startswith("local epoch ")]) == 2


def test_a_two_stage_checkpoint_is_not_resumed_as_a_global_run(config):
    result = train(config)
    with pytest.raises(ValueError, match="trains the local stage, which this run does not have"):
        train(dataclasses.replace(config, refine=False, resume=str(result.run_dir / "best.pt")))


def test_a_run_stopped_in_its_global_stage_resumes_into_the_local_one(config, monkeypatch):
    import cephalo.engine.run.fit as trainer
    from cephalo.engine.step.loop import train_one_epoch

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_at_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(trainer, "train_one_epoch", train_one_epoch)
    run = Path(config.output_dir) / "run"
    assert not (run / "local_last.pt").exists()
    result = train(dataclasses.replace(config, resume=str(run)))
    assert (run / "local_last.pt").is_file() and set(load_checkpoint(result.run_dir / "best.pt")["stages"]) == {GLOBAL, LOCAL}
    assert load_checkpoint(run / "last.pt")["epoch"] == 2  # the global stage finished first


def test_a_time_budget_covers_both_stages(config, capsys):
    """Half of the budget for the global stage, what is left for the local one, each planned after its first epoch
    (whether a run ends within its budget on a real machine: benchmarks/budget_check.py)."""
    train(dataclasses.replace(config, time_budget=12.0, epochs=1000, local_epochs=1000))
    out = capsys.readouterr().out
    assert "time budget: 6 s for the global stage" in out and "time budget 6 s:" in out  # half for the global stage
    left = re.search(r"local stage time budget: (\d+(?:\.\d+)?) s", out)
    assert left and 1.0 <= float(left.group(1)) <= 12.0 - 0.5  # what the global stage left of it
    assert re.search(r"local stage time budget \d+(\.\d+)? s: .* -> \d+ epoch", out)  # planned after its first


def test_refine_on_an_aariz_folder_of_two_devices_resamples_each_to_the_patch_scale(config, tmp_path, monkeypatch):
    from tests.fixtures_datasets import AarizBuilder

    builder = AarizBuilder(tmp_path / "aariz")
    for i in range(6):  # two devices: 0.1 and 0.2 mm pixels
        builder.add_case(f"t{i}", "train", pixel_size="0.1" if i % 2 else "0.2")
    for i in range(2):
        builder.add_case(f"v{i}", "valid", pixel_size="0.1" if i % 2 else "0.2")
    aariz = dataclasses.replace(config, dataset_path=str(tmp_path / "aariz"), image_size=(64, 64), patch_mm=0.4,
                                local_epochs=1, run_name="aariz")
    scales = []
    real_read = local_stage.ScaledImages.read

    def recorded(records, cache, progress):
        scaled, seconds = real_read(records, cache, progress)
        scales.append(([r.spacing_mm for r in records], scaled))
        return scaled, seconds

    monkeypatch.setattr(local_stage.ScaledImages, "read", staticmethod(recorded))
    result = train(aariz)
    assert len(read_stage(load_checkpoint(result.run_dir / "best.pt"), "best.pt", LOCAL).spec.landmark_names) == 29
    spacings, scaled = scales[0]  # the training images
    assert sorted(set(spacings)) == [0.1, 0.2]
    assert torch.allclose(scaled.spacing_mm, torch.full((6,), 0.4), rtol=0.05)  # each at the patch scale
    fine = [i for i, s in enumerate(spacings) if s == 0.1]
    coarse = [i for i, s in enumerate(spacings) if s == 0.2]
    assert scaled.rescales[fine[0]].size == (20, 16) and scaled.rescales[coarse[0]].size == (40, 32)


def test_a_local_stage_that_does_not_beat_the_global_model_leaves_best_pt_global(config, monkeypatch, capsys):
    monkeypatch.setattr(local_stage, "ONLY_IF_BETTER", True)
    monkeypatch.setattr(local_stage.LocalStage, "validate", lambda *args, **kwargs: {
        "val_mre_mm": 99.0, "val_sd_mm": 1.0, "val_sdr_2mm": 0.0})
    result = train(config)
    assert set(load_checkpoint(result.run_dir / "best.pt")["stages"]) == {GLOBAL}
    assert "never beat the global model alone" in capsys.readouterr().out
    train(dataclasses.replace(config, refine=False, run_name="global"))
    source = Path(config.output_dir) / "global" / "best.pt"
    refined = train(dataclasses.replace(config, refine=False, refine_from=str(source), run_name="refined"))
    assert set(load_checkpoint(refined.run_dir / "best.pt")["stages"]) == {GLOBAL}  # a copy of the global model


@pytest.mark.parametrize("context", [0, 2])
def test_a_two_stage_export_predicts_the_landmarks_of_pytorch_within_0_05_px(config, tmp_path, monkeypatch, capsys,
                                                                              context):
    pytest.importorskip("onnxruntime")
    from cephalo.inference.export import compare_with_torch, export_checkpoint, local_path
    from cephalo.inference.onnx_predictor import OnnxPredictor

    # the local stage corrects only the first landmark: both predictors must keep the global position of the others
    monkeypatch.setattr(local_stage, "choose_landmarks", lambda refined, global_: np.arange(refined.shape[1]) == 0)
    result = train(dataclasses.replace(config, patch_context=context))
    if context:
        assert "(6.4 mm) with context at 0.4 mm/px (12.8 mm)" in capsys.readouterr().out
    report = export_checkpoint(result.run_dir / "best.pt", tmp_path / "model.onnx")
    assert report.local is not None and report.local.path == local_path(tmp_path / "model.onnx")
    assert report.metadata["local"] == "model.local.onnx" and report.local.metadata["mm_per_px"] == 0.2
    assert report.local.metadata["context"] == context
    assert report.local.metadata["input"]["shape"] == ["batch", 2 if context else 1, 32, 32]
    diff, peak = compare_with_torch(report.local, batch_size=2)  # what cephalo export checks, on its patches
    assert diff <= 1e-4 * max(peak, 1.0)
    items = resolve_inputs([config.dataset_path])[0]
    predictor = TorchPredictor(result.run_dir / "best.pt", device="cpu", mixed_precision=False)
    torch_run = predict_to_folder(predictor, items, tmp_path / "torch", num_workers=0, progress=False)
    onnx_predictor = OnnxPredictor(tmp_path / "model.onnx", device="cpu")
    assert onnx_predictor.patch_mm == 0.2 and onnx_predictor.geometry.context == predictor.geometry.context == context
    names = predictor.landmark_names
    assert onnx_predictor.local_spec.refined_landmarks == predictor.local_spec.refined_landmarks == names[:1]
    predictor.local_spec = None  # the global stage alone
    global_run = predict_to_folder(predictor, items, tmp_path / "global", num_workers=0, progress=False)
    onnx_run = predict_to_folder(onnx_predictor, items, tmp_path / "onnx", num_workers=0, progress=False)
    from cephalo.evaluation.predictions import read_predictions

    _, a = read_predictions(torch_run.csv_path)
    _, b = read_predictions(onnx_run.csv_path)
    assert a.keys() == b.keys()
    assert max(float(abs(a[k] - b[k]).max()) for k in a) < 0.05  # original pixels
    _, g = read_predictions(global_run.csv_path)
    for k in a:  # landmark 0 refined, the others at their global position
        assert abs(a[k][1:] - g[k][1:]).max() < 1e-6 and abs(b[k][1:] - g[k][1:]).max() < 0.05
    assert max(float(abs(a[k][0] - g[k][0]).max()) for k in a) > 1e-3
    report.local.path.unlink()
    with pytest.raises(FileNotFoundError, match="local stage .*model.local.onnx is missing"):
        OnnxPredictor(tmp_path / "model.onnx", device="cpu")


def test_a_resumed_budgeted_local_stage_keeps_its_plan_and_ends_with_the_uninterrupted_weights(config, monkeypatch):
    train(dataclasses.replace(config, refine=False, run_name="global"))
    source = f"{config.output_dir}/global/best.pt"
    budgeted = dataclasses.replace(config, refine=False, refine_from=source, time_budget=600.0, local_epochs=1000)
    # 2 epochs of 4 updates and half of a third, not timed
    monkeypatch.setattr(budget, "planned_updates", lambda *args, **kwargs: 10)
    torch.manual_seed(0)
    train(dataclasses.replace(budgeted, run_name="full"))
    interrupted_in_local_epoch_2(dataclasses.replace(budgeted, run_name="part"), monkeypatch)

    def no_new_plan(*args, **kwargs):
        raise AssertionError("a resumed run must keep its plan, not make a new one")

    monkeypatch.setattr(budget, "planned_updates", no_new_plan)
    part_dir = f"{config.output_dir}/part"
    assert load_checkpoint(f"{part_dir}/local_last.pt")["progress"]["planned_updates"] == 10
    train(dataclasses.replace(budgeted, run_name="part", resume=part_dir))
    a = load_checkpoint(f"{config.output_dir}/full/local_last.pt")
    b = load_checkpoint(f"{part_dir}/local_last.pt")
    assert a["progress"] == b["progress"] and a["progress"]["epoch"] == 3 and a["progress"]["updates"] == 10
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    assert a["scheduler"] == b["scheduler"]


def test_predict_tta_with_a_two_stage_model_moves_the_local_starts(config, tmp_path, capsys):
    from cephalo.cli.main import main

    result = train(config)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(result.run_dir / "best.pt"), config.dataset_path, "--out",
                 str(tmp_path / "tta"), "--tta", "--num_workers", "0", "--no_progress", "--device", "cpu"]) == 0
    assert "test-time augmentation: 1 global view(s), 5 local start(s)" in capsys.readouterr().out


def test_refine_from_a_two_stage_checkpoint_uses_its_global_model_and_says_so(config, monkeypatch, capsys):
    """A two-stage best.pt given where a global model is expected: its global stage is refined anew; when the new
    local stage never wins, the new best.pt is that global model alone, as the last line says (it was a copy of
    the two-stage file)."""
    two_stage = train(config).run_dir / "best.pt"
    assert set(load_checkpoint(two_stage)["stages"]) == {GLOBAL, LOCAL}
    monkeypatch.setattr(local_stage, "ONLY_IF_BETTER", True)
    monkeypatch.setattr(local_stage.LocalStage, "validate", lambda *args, **kwargs: {
        "val_mre_mm": 99.0, "val_sd_mm": 1.0, "val_sdr_2mm": 0.0})
    capsys.readouterr()
    result = train(dataclasses.replace(config, refine=False, refine_from=str(two_stage), run_name="again"))
    out = capsys.readouterr().out
    assert f"note: {two_stage} holds a two-stage model: its global stage is the one this local stage trains on" in out
    assert "best.pt holds the global model only" in out
    best = load_checkpoint(result.run_dir / "best.pt")
    assert set(best["stages"]) == {GLOBAL} and best["version"] == 2
    for key, value in read_stage(load_checkpoint(two_stage), two_stage, GLOBAL).weights.items():
        torch.testing.assert_close(best["model"][key], value, rtol=0, atol=0)
