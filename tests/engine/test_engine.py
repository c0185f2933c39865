"""The training engine on tiny models and tiny images: accumulation, EMA, LR schedule, checkpoints, resume."""

import copy
import math
import pathlib

import pytest
import torch
from torch import nn

from cephalo.artifact.checkpoint import load_checkpoint, read_stage
from cephalo.engine.run.pipeline import train
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.data import micro_batch_weights
from cephalo.engine.step.ema import ModelEma
from cephalo.engine.step.loop import train_one_epoch
from cephalo.engine.step.progress import Progress, Tracker
from cephalo.engine.step.schedule import warmup_cosine
from tests.helpers import TinyHeatmapNet, interrupted_at_epoch


def test_micro_batch_weights_sum_to_one_per_group():
    assert micro_batch_weights(8, 1, 4) == [0.25] * 8
    assert micro_batch_weights(7, 2, 2) == [0.5, 0.5, 2 / 3, 1 / 3]  # partial last batch and group
    assert micro_batch_weights(5, 1, 4) == [0.25] * 4 + [1.0]


def test_accumulation_equals_one_big_batch(tiny_config):
    torch.manual_seed(0)
    model = TinyHeatmapNet()
    big = dataclass_replace(tiny_config, batch_size=4, gradient_accumulation_steps=1, max_updates=1)
    small = dataclass_replace(tiny_config, batch_size=1, gradient_accumulation_steps=4, max_updates=1)
    weights = []
    for config in (big, small):
        t = GlobalStage(config, copy.deepcopy(model))
        progress = Progress()
        train_one_epoch(t, progress, after_update=lambda p: p.updates >= 1)
        assert progress.updates == 1 and progress.seen == 4
        weights.append(torch.cat([p.detach().flatten() for p in t.parts.raw_model.parameters()]))
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(weights[0], start)  # the update did something
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-6)


def test_ema_maths():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEma(model, decay=0.9)
    expected = torch.zeros(1, 2)
    for step in range(30):
        with torch.no_grad():
            model.weight.fill_(float(step + 1))
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * model.weight.detach()
        ema.update(model)
        torch.testing.assert_close(ema.module.weight, expected)
    assert ema.updates == 30 and ema.current_decay() == pytest.approx(31 / 40)  # still warming up
    ema.updates = 1000
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_lr_schedule_shape():
    f = warmup_cosine(total_updates=100, warmup_updates=10, min_lr_ratio=0.01)
    values = [f(u) for u in range(100)]
    assert all(a < b for a, b in zip(values[:10], values[1:11]))  # linear warm-up up to the peak
    assert values[10] == pytest.approx(1.0) and max(values) == pytest.approx(1.0)
    assert values[9] == pytest.approx(10 / 11)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # then never increases
    assert f(100) == pytest.approx(0.01) and f(55) == pytest.approx(0.01 + 0.99 * 0.5)


def test_checkpoint_contents(tiny_config):
    train(dataclass_replace(tiny_config, use_ema=True, epochs=1), TinyHeatmapNet())
    state = load_checkpoint(f"{tiny_config.output_dir}/run/best.pt")
    for key in ["format", "version", "stages", "model", "ema", "optimizer", "scheduler", "scaler", "epoch", "updates",
                "progress", "rng", "config", "tracker", "metrics", "predict_with"]:
        assert key in state, key
    assert state["version"] == 2 and state["predict_with"] == "ema"
    spec = read_stage(state, "best.pt").spec
    assert spec.landmark_names == ("S", "N", "Me") and spec.image_size == (32, 32) and spec.stride == 4
    assert state["epoch"] == 1 and state["updates"] == 4  # 8 training images, batches of 2
    assert set(state["tracker"]) == {"monitor", "best", "best_epoch", "bad_validations", "stopped_because"}
    assert state["metrics"]["epoch"] == 1 and "val_errors_mm" not in state["metrics"]


def test_checkpoints_of_a_compiled_model_keep_the_plain_names(tiny_config):
    """torch.compile's wrapper renames every weight ``_orig_mod.*``: checkpoints must hold the plain module's names
    (wrapping happens at once; compiling would only start at the first forward, which saving does not need)."""
    from cephalo.engine.run.saver import CheckpointWriter
    from cephalo.engine.runtime.compile import CompileFallback

    t = GlobalStage(dataclass_replace(tiny_config, use_compile=True, use_ema=True), TinyHeatmapNet())
    assert isinstance(t.parts.model, CompileFallback) and isinstance(t.parts.eval_forward, CompileFallback)
    compiled = t.parts.model._compiled[0]
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())  # what a careless save would write
    pathlib.Path(tiny_config.output_dir).mkdir(parents=True)
    writer = CheckpointWriter(tiny_config.output_dir, t)
    assert writer.save("last", Progress(), Tracker(), {})
    state = load_checkpoint(f"{tiny_config.output_dir}/last.pt")
    assert set(state["model"]) == set(TinyHeatmapNet().state_dict())
    assert set(state["ema"]["module"]) == set(TinyHeatmapNet().state_dict())


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_config, monkeypatch):
    torch.manual_seed(0)
    model = TinyHeatmapNet()
    full = dataclass_replace(tiny_config, epochs=3, use_ema=True, run_name="full", gradient_accumulation_steps=2)
    train(full, copy.deepcopy(model))

    import cephalo.engine.run.fit as trainer

    # the same run, stopped by Ctrl+C during its second epoch
    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_at_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        train(dataclass_replace(full, run_name="part"), copy.deepcopy(model))
    monkeypatch.setattr(trainer, "train_one_epoch", train_one_epoch)
    assert load_checkpoint(f"{tiny_config.output_dir}/part/last.pt")["epoch"] == 1
    train(dataclass_replace(full, run_name="part", resume=f"{tiny_config.output_dir}/part/last.pt"), TinyHeatmapNet())

    a = load_checkpoint(f"{tiny_config.output_dir}/full/last.pt")
    b = load_checkpoint(f"{tiny_config.output_dir}/part/last.pt")
    assert a["updates"] == b["updates"] == 6 and b["epoch"] == 3
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    for key in a["ema"]["module"]:
        torch.testing.assert_close(a["ema"]["module"][key], b["ema"]["module"][key], rtol=0, atol=0)
    assert a["tracker"] == b["tracker"]


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_compile_failure_falls_back_to_eager(tiny_config, monkeypatch):
    import cephalo.engine.runtime.compile as compile_module

    modes = []

    def broken_compile(model, mode="default"):
        modes.append(mode)

        def run(x):
            raise RuntimeError("Cannot find a working triton installation")
        return run

    monkeypatch.setattr(compile_module.torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="torch.compile failed.*triton.*eager mode"):
        result = train(dataclass_replace(tiny_config, use_compile=True, compile_mode="max-autotune", use_ema=True,
                                       epochs=1), TinyHeatmapNet())
    assert modes == ["max-autotune", "max-autotune"]  # the model and, separately, its EMA copy
    assert result.metrics["compile_seconds"] > 0  # the first update is reported apart from the speed
    assert math.isfinite(result.metrics["val_mre_mm"])
    state = load_checkpoint(f"{tiny_config.output_dir}/run/last.pt")
    assert all(k.startswith("net.") for k in state["model"])  # the plain model's names, no wrapper prefix


@pytest.mark.slow
def test_real_compile_trains_on_cpu(tiny_config):
    """A real (cold, ~15 s) torch.compile of a tiny model through the training step, backward included: the
    compiled code runs (no fallback), and the first update's time is reported apart."""
    import warnings

    from cephalo.engine.runtime.compile import CompileFallback

    compiled = []
    real_init = CompileFallback.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        compiled.append(self)

    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("always")
        mp.setattr(CompileFallback, "__init__", keep)
        result = train(dataclass_replace(tiny_config, use_compile=True, epochs=1), TinyHeatmapNet())
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert compiled and all(wrapper.compiled for wrapper in compiled)  # still compiled after training
    assert result.metrics["compile_seconds"] > 0 and math.isfinite(result.metrics["val_mre_mm"])


def test_save_frequency_writes_last_every_n_epochs_and_at_the_end(tiny_config, monkeypatch, capsys):
    from cephalo.engine.run.saver import CheckpointWriter

    saved = []
    real_save = CheckpointWriter.save

    def spy(self, name, progress, tracker, metrics):
        saved.append((name, progress.epoch))
        return real_save(self, name, progress, tracker, metrics)

    monkeypatch.setattr(CheckpointWriter, "save", spy)
    train(dataclass_replace(tiny_config, epochs=5, save_frequency=2), TinyHeatmapNet())
    assert [e for name, e in saved if name == "last"] == [2, 4, 5]
    assert "AdamW, foreach implementation" in capsys.readouterr().out


def test_min_delta_and_early_stopping():
    tracker = Tracker("val_mre_mm")
    improved = [tracker.update({"epoch": epoch, "val_mre_mm": mre}, min_delta=0.1, patience=2)
                for epoch, mre in enumerate([2.0, 1.95, 1.5, 1.45, 1.41], start=1)]
    # 1.95 and 1.45 improve by less than 0.1: not counted; two such validations in a row stop the run
    assert improved == [True, False, True, False, False]
    assert tracker.best == 1.5 and tracker.best_epoch == 3
    assert "has not improved for 2 validations" in tracker.stopped_because
    assert Tracker.from_state_dict(tracker.state_dict()).stopped_because is None  # history for a resumed run
    assert Tracker.from_state_dict(tracker.state_dict()).bad_validations == 2


def test_training_with_full_augmentation_changes_the_training_batches_only(tiny_config, monkeypatch, capsys):
    """--augmentation full: every training micro-batch goes through augment on the device (images and landmarks
    changed, shapes kept), validation never does, and the run still learns something finite."""
    import cephalo.engine.stages.global_stage as global_stage

    calls = []

    def spy(x, landmarks, cfg, generator=None):
        out, moved = loop_augment(x, landmarks, cfg, generator)
        calls.append((x.shape, out.shape, bool((out != x).any()), bool((moved != landmarks).any())))
        return out, moved

    loop_augment = global_stage.random_augment
    monkeypatch.setattr(global_stage, "random_augment", spy)
    result = train(dataclass_replace(tiny_config, augmentation="full", epochs=2), TinyHeatmapNet())
    assert len(calls) == 8  # 2 epochs x 4 training micro-batches; none for the 2 validations
    assert all(before == after for before, after, _, _ in calls)
    assert any(pixels for _, _, pixels, _ in calls) and any(points for _, _, _, points in calls)
    assert math.isfinite(result.metrics["val_mre_mm"]) and "augmentation full" in capsys.readouterr().out


def test_early_stopping_reason_is_saved_and_resume_keeps_the_patience_count(tiny_config, capsys):
    import json

    # lr 0: validation never improves after the first epoch
    config = dataclass_replace(tiny_config, lr=0.0, early_stopping=True, patience=2, epochs=2)
    first = train(config, TinyHeatmapNet())
    assert first.tracker.bad_validations == 1 and first.tracker.stopped_because is None
    run_dir = f"{tiny_config.output_dir}/run"
    resumed = train(dataclass_replace(config, epochs=10, resume=f"{run_dir}/last.pt"), TinyHeatmapNet())
    assert resumed.metrics["epoch"] == 3  # one more bad validation was enough: the count went on from 1
    reason = resumed.tracker.stopped_because
    assert reason.startswith("early stopping: val_mre_mm has not improved for 2 validations")
    assert load_checkpoint(f"{run_dir}/last.pt")["tracker"]["stopped_because"] == reason
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl", encoding="utf-8")]
    assert rows[-1]["stopped_because"] == reason and rows[0]["stopped_because"] is None
    assert reason in capsys.readouterr().out


def test_every_validation_figure_is_marked_as_one(tiny_config, capsys):
    """The end-of-run line, every validated row of metrics.jsonl and the metrics in best.pt say that these figures
    come from the images the best epoch was chosen on (they flatter the model)."""
    import json

    from cephalo.artifact.checkpoint import read_checkpoint
    from cephalo.engine.run.pipeline import train
    from tests.helpers import TinyHeatmapNet

    result = train(tiny_config, TinyHeatmapNet())
    out = capsys.readouterr().out
    assert "(a validation figure: the best epoch was chosen on these images, so it flatters the model" in out
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["val_kind"] == "selection" for r in rows if "val_mre_mm" in r)
    assert read_checkpoint(result.run_dir / "best.pt").validation()["val_kind"] == "selection"
    assert "val_kind" in (result.run_dir / "metrics.csv").read_text().splitlines()[0]
