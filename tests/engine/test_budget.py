"""--time_budget: durations, the plan made after the first epoch, ending within the budget, and resume."""

import copy
import dataclasses
import json

import pytest
import torch

import cephalo.engine.run.budget as budget
import cephalo.engine.run.fit as trainer
from cephalo.artifact.checkpoint import load_checkpoint
from cephalo.checks import duration_seconds, format_duration
from cephalo.engine.config import load_config_file, parse_args
from cephalo.engine.run.budget import epochs_text, first_epoch_costs, planned_updates
from cephalo.engine.run.pipeline import train
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.loop import train_one_epoch
from tests.helpers import TinyHeatmapNet, interrupted_at_epoch, raise_on_call


@pytest.mark.parametrize("word, seconds", [("90s", 90), ("25m", 1500), ("8h", 28800), ("1h30m", 5400),
                                           ("1.5h", 5400), ("2m30s", 150), ("45", 45), (" 10MIN ", 600)])
def test_durations(word, seconds):
    assert duration_seconds(word) == seconds


@pytest.mark.parametrize("word", ["", "abc", "10x", "m", "1h30", "h1"])
def test_bad_durations_are_refused(word):
    with pytest.raises(ValueError):
        duration_seconds(word)


def test_format_duration():
    assert [format_duration(s) for s in (5400, 1500, 90, 42.4, 0)] == ["1 h 30 min", "25 min", "1 min 30 s", "42 s",
                                                                      "0 s"]


def test_the_flag_and_a_config_file_take_durations(tmp_path, capsys):
    assert parse_args(["--dataset_path", "synthetic", "--time_budget", "1h30m"]).time_budget == 5400
    assert parse_args(["--dataset_path", "synthetic"]).time_budget is None  # the user's command line: no budget
    with pytest.raises(SystemExit):
        parse_args(["--dataset_path", "synthetic", "--time_budget", "tonight"])
    assert "--time_budget: 'tonight' is not a duration such as 90s, 25m, 8h or 1h30m" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--dataset_path", "synthetic", "--time_budget", "0s"])
    assert "must be more than 0" in capsys.readouterr().err
    (tmp_path / "c.json").write_text(json.dumps({"time_budget": "25m"}))
    assert load_config_file(tmp_path / "c.json")["time_budget"] == 1500
    (tmp_path / "bad.json").write_text(json.dumps({"time_budget": "soon"}))
    with pytest.raises(ValueError, match="bad.json: time_budget 'soon' is not a duration"):
        load_config_file(tmp_path / "bad.json")


def test_the_plan_is_the_epochs_that_fit_the_time_left_then_part_of_one():
    # 100 s budget (95 s usable), 10 s gone, 1 s per update, 5 updates per epoch, nothing else: 17 more epochs
    assert planned_updates(100, 10, 1.0, 0.0, 5) == 5 * 18
    assert planned_updates(100, 10, 1.0, 0.0, 5, max_updates=40) == 40
    assert planned_updates(100, 99, 1.0, 0.0, 5) == 5  # no time left: the first epoch is the run
    assert planned_updates(100, 10, 1.0, 0.0, 5, margin=0.0) == 5 * 19
    # + 1 s of validation per epoch (6 s an epoch): 85 s = 14 epochs (84 s), and the 1 s left pays no validation
    assert planned_updates(100, 10, 1.0, 1.0, 5) == 5 * 15
    # 88 s: 14 epochs, then 3 updates of one more and its validation
    assert planned_updates(100, 7, 1.0, 1.0, 5) == 5 * 15 + 3
    # 0.45 s left at 0.1 s per update: 4 updates of a second epoch
    assert planned_updates(100, 94.55, 0.1, 0.0, 5) == 5 + 4


def test_first_epoch_costs_split_training_from_the_rest():
    # 10 s of training over 5 updates in a 13 s epoch whose cold compile took 1 s: 2 s per update, 2 s of the rest
    assert first_epoch_costs(10.0, 5, 13.0, compile_s=1.0) == (2.0, 2.0)
    assert first_epoch_costs(10.0, 0, 9.0) == (10.0, 0.0)  # no update counted, a clock read early: never negative


def test_epochs_text():
    assert [epochs_text(n, 5) for n in (5, 10, 12, 6)] == ["1 epoch", "2 epochs", "2 epochs + 2 updates",
                                                           "1 epoch + 1 update"]


def test_a_budgeted_run_plans_its_updates_and_runs_its_schedule_to_the_end(tiny_config, capsys):
    """The plan's mechanics; whether a run ends within its budget on a real machine is measured by
    benchmarks/budget_check.py (a wall-clock figure, not a test's)."""
    seconds = 8.0  # a first epoch of this tiny run takes ~1 s (first calls), later ones far less
    train(dataclasses.replace(tiny_config, time_budget=seconds), TinyHeatmapNet())
    out = capsys.readouterr().out
    state = load_checkpoint(f"{tiny_config.output_dir}/run/last.pt")
    planned = state["progress"]["planned_updates"]
    assert planned > 2 * 4 and state["updates"] == planned  # several epochs of 4 updates, all of the plan done
    assert state["epoch"] == -(-planned // 4)  # a partial last epoch counts as one
    assert f"-> {epochs_text(planned, 4)}, {planned} updates" in out and "time budget: 8 s for the whole run" in out
    assert state["metrics"]["lr"] == pytest.approx(tiny_config.lr * tiny_config.min_lr_ratio, rel=1e-3)


def test_a_budget_shorter_than_the_first_epoch_stops_at_it_and_validates(tiny_config, capsys):
    result = train(dataclasses.replace(tiny_config, time_budget=1e-3), TinyHeatmapNet())
    assert "ran out during the first epoch" in result.tracker.stopped_because
    assert result.metrics["updates"] == 1 and "val_mre_mm" in result.metrics and result.best_written
    assert load_checkpoint(f"{tiny_config.output_dir}/run/last.pt")["progress"]["planned_updates"] == 0


def test_resume_in_a_budgeted_run_keeps_the_plan_and_gives_the_same_weights(tiny_config, monkeypatch):
    # the clock, made repeatable: 3 epochs of 4 updates and 2 updates of a fourth
    monkeypatch.setattr(budget, "planned_updates", lambda *args, **kwargs: 3 * 4 + 2)
    torch.manual_seed(0)
    model = TinyHeatmapNet()
    full = dataclasses.replace(tiny_config, time_budget=3600, use_ema=True, run_name="full")
    train(full, copy.deepcopy(model))

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted_at_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(full, run_name="part"), copy.deepcopy(model))
    monkeypatch.setattr(trainer, "train_one_epoch", train_one_epoch)
    monkeypatch.setattr(budget, "planned_updates", lambda *args, **kwargs: pytest.fail("a resumed run re-planned"))
    train(dataclasses.replace(full, run_name="part", resume=f"{tiny_config.output_dir}/part/last.pt"), TinyHeatmapNet())

    a = load_checkpoint(f"{tiny_config.output_dir}/full/last.pt")
    b = load_checkpoint(f"{tiny_config.output_dir}/part/last.pt")
    assert a["updates"] == b["updates"] == 14 and a["epoch"] == b["epoch"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    for key in a["ema"]["module"]:
        torch.testing.assert_close(a["ema"]["module"][key], b["ema"]["module"][key], rtol=0, atol=0)
    assert a["metrics"]["lr"] == pytest.approx(tiny_config.lr * tiny_config.min_lr_ratio)  # the planned schedule

    # stopped after the plan's last update, before the partial epoch's end (its validation): the resumed run only
    # ends that epoch, it trains no further update
    real_validate = GlobalStage.validate
    monkeypatch.setattr(GlobalStage, "validate", raise_on_call(real_validate, 4))  # the partial epoch's validation
    monkeypatch.setattr(budget, "planned_updates", lambda *args, **kwargs: 3 * 4 + 2)
    late = dataclasses.replace(full, run_name="late", recovery_interval=14)
    with pytest.raises(KeyboardInterrupt):
        train(late, copy.deepcopy(model))
    assert load_checkpoint(f"{tiny_config.output_dir}/late/recovery.pt")["updates"] == 14
    monkeypatch.setattr(GlobalStage, "validate", real_validate)
    monkeypatch.setattr(budget, "planned_updates", lambda *args, **kwargs: pytest.fail("a resumed run re-planned"))
    train(dataclasses.replace(late, resume=f"{tiny_config.output_dir}/late/recovery.pt"), TinyHeatmapNet())
    c = load_checkpoint(f"{tiny_config.output_dir}/late/last.pt")
    assert c["updates"] == 14 and c["epoch"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], c["model"][key], rtol=0, atol=0)


@pytest.mark.parametrize("budget_s, given, refine, size", [(30.0, {"time_budget"}, False, (32, 32)),
                                                           (600.0, {"time_budget"}, False, (64, 64)),
                                                           (600.0, {"time_budget", "image_size"}, False, (48, 48)),
                                                           (30.0, {"time_budget"}, True, (16, 16)),
                                                           (600.0, {"time_budget"}, True, (40, 40)),
                                                           (600.0, {"time_budget", "image_size"}, True, (48, 48))])
def test_a_budget_without_image_size_takes_the_size_measured_for_it(tiny_config, monkeypatch, capsys, budget_s,
                                                                    given, refine, size):
    import cephalo.engine.run.pipeline as stages
    from cephalo.engine.config import TrainConfig

    monkeypatch.setattr(TrainConfig, "check", lambda self: None)  # 48 and 40 are not multiples of 32
    monkeypatch.setattr(budget, "BUDGET_IMAGE_SIZES", ((60.0, (32, 32)), (float("inf"), (64, 64))))
    monkeypatch.setattr(budget, "REFINE_IMAGE_SIZES", ((60.0, (16, 16)), (float("inf"), (40, 40))))
    seen = []
    # the global stage only: an interrupted one ends the run before its local stage
    monkeypatch.setattr(stages, "GlobalStage", lambda config, model=None, run_config=None: seen.append(config.image_size))
    monkeypatch.setattr(stages, "fit_stage", lambda *args, **kwargs: trainer.FitResult(None, None, interrupted="SIGINT"))
    stages.train(dataclasses.replace(tiny_config, image_size=(48, 48), time_budget=budget_s, refine=refine),
                 given=given)
    assert seen == [size]
    assert ("global input" in capsys.readouterr().out) == ("image_size" not in given)
