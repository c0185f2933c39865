"""``cephalo bench``: rows measured in worker processes, error rows, the report, and the pure figures."""

from __future__ import annotations

import json

import pytest
import torch

from cephalo.bench.run import parse_worker_output
from cephalo.bench.techniques import ROW_NAMES, build_rows, parse_techniques, save_frequency_gain
from cephalo.bench.worker import FAIL_ENV, error_result
from cephalo.cli.main import main
from cephalo.engine.runtime.monitor import peak_rss_bytes


def test_bench_measures_rows_and_keeps_going_after_a_failing_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FAIL_ENV, "light_augmentation")  # the worker of that row fails on purpose
    out = tmp_path / "bench"
    code = main(["bench", "--image_size", "64", "64", "--model", "hrnet_w18_small", "--batch_size", "2",
                 "--gradient_accumulation_steps", "2", "--warmup_updates", "1", "--measure_updates", "2",
                 "--num_workers", "0", "--device", "cpu", "--cache_dir", str(tmp_path / "cache"),
                 "--techniques", "baseline,current,channels_last,light_augmentation,early_stopping,save_frequency,"
                 "local_stage", "--patch_size", "32", "--local_batch", "2", "--output_dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["baseline", "current", "channels_last", "early_stopping", "save_frequency",
                          "light_augmentation", "local_stage"]  # table order
    for name in ("baseline", "current", "channels_last"):
        result = rows[name]["result"]
        assert "error" not in result, result
        assert result["images_per_s"] > 0 and result["measured_images"] > 0
        assert result["first_updates_seconds"] > 0 and len(result["update_images_per_s"]) == 2
        if peak_rss_bytes() is not None:
            assert result["peak_memory_bytes"] > 0
    assert rows["channels_last"]["vs_current"] > 0 and rows["current"]["vs_baseline"] > 0
    assert rows["current"]["result"]["save_seconds"] > 0  # row 7 times one checkpoint write in the current worker
    assert 0 < rows["save_frequency"]["derived"]["gain"] < 1
    assert "failure forced" in rows["light_augmentation"]["result"]["error"]
    assert rows["early_stopping"]["result"] is None
    local = rows["local_stage"]["result"]  # the local stage's step, on an untrained global model
    assert local["stage"] == "local" and local["patches_per_s"] == pytest.approx(19 * local["images_per_s"])
    assert rows["local_stage"]["vs_current"] is None and "patches/s" in rows["local_stage"]["cells"]["note"]
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "claimed (seed notes)" in md and "10–20 %" in md and "- machine: " in md and "torch " in md and "load average" in md
    assert "error: RuntimeError: failure forced" in md and "saves epochs, not step time" in md
    assert "derived from the measured save time" in md
    assert "[6/7] light_augmentation: error: RuntimeError: failure forced" in printed
    assert not list(out.glob("bench-save-*"))  # the timed checkpoint was removed


def test_unknown_technique_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="unknown name.*compiel.*valid: all, baseline, current"):
        parse_techniques("baseline,compiel")
    assert main(["bench", "--techniques", "fast"]) == 2
    assert "unknown name(s) fast" in capsys.readouterr().err


def test_technique_list_in_table_order():
    assert parse_techniques("all") == list(ROW_NAMES)
    assert parse_techniques(" channels_last, baseline ") == ["baseline", "channels_last"]


def test_lighter_model_mapping():
    rows = build_rows(["lighter_model"], {"model": "resnet50", "augmentation": "full"}, 8, "default")
    assert rows[0].overrides is None and "no lighter model than resnet50" in rows[0].note


def test_save_frequency_arithmetic():
    d = save_frequency_gain(save_seconds=2.0, images_per_s=10.0, epoch_images=700, every=5)
    assert d["epoch_seconds"] == pytest.approx(70.0)
    assert d["share"] == pytest.approx(2 / 72)
    assert d["gain"] == pytest.approx(0.8 * 2 / 72)


def test_rows_add_one_technique_to_current():
    common = {"model": "hrnet_w32", "augmentation": "full", "num_workers": 2, "local_model": "hrnet_w18_small",
              "patch_size": 64, "local_batch": 4}
    rows = {r.name: r for r in build_rows(list(ROW_NAMES), common, 8, "max-autotune")}
    assert rows["local_stage"].overrides == {**rows["current"].overrides, "refine": True}
    base, current = rows["baseline"].overrides, rows["current"].overrides
    assert not base["mixed_precision"] and not base["use_ema"] and base["gradient_accumulation_steps"] == 1
    assert not base["pin_memory"] and not base["non_blocking"] and not base["persistent_workers"]
    assert current == {**base, "mixed_precision": True, "use_ema": True, "gradient_accumulation_steps": 8}
    assert rows["current"].time_save  # save_frequency was asked for
    assert rows["compile"].overrides == {**current, "use_compile": True, "compile_mode": "max-autotune"}
    assert rows["non_blocking"].overrides == {**current, "non_blocking": True, "pin_memory": True}
    assert rows["light_augmentation"].overrides["augmentation"] == "light"
    assert rows["lighter_model"].overrides["model"] == "hrnet_w18"
    assert rows["dataloader"].overrides["prefetch_factor"] == 4 and rows["dataloader"].overrides["persistent_workers"]
    safe = rows["all_safe"].overrides
    assert safe["use_compile"] and safe["channels_last"] and safe["fused_optimizer"] and safe["non_blocking"]
    assert not safe["gradient_checkpointing"] and safe["augmentation"] == "full" and safe["model"] == "hrnet_w32"
    eager = {**{k: v for k, v in safe.items() if k != "compile_mode"}, "use_compile": False}
    assert rows["all_safe_eager"].overrides == eager  # what a run gets where compiling is not possible
    assert rows["early_stopping"].overrides is None and rows["save_frequency"].overrides is None
    light = build_rows(["light_augmentation"], {**common, "augmentation": "light"}, 8, "default")[0]
    assert light.overrides is None and "already uses --augmentation light" in light.note


def test_worker_output_and_errors():
    assert parse_worker_output('noise\n{"a": 1}\nmore noise\n{"images_per_s": 2.5}\n', "", 0) == {"images_per_s": 2.5}
    failed = parse_worker_output("", "Traceback ...\nSomething: broke\n", -9)
    assert failed["error"] == "worker ended without a result (killed by signal 9): Something: broke"
    assert error_result(torch.OutOfMemoryError("CUDA out of memory. Tried ...")) == {"error": "out of memory"}
    assert error_result(ValueError("bad size\nmore")) == {"error": "ValueError: bad size"}


def test_a_bench_stopped_part_way_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    """The report is rewritten after every row: a GPU run killed by its time limit kept nothing before."""
    import cephalo.bench.run as bench_run

    measure = bench_run.run_row
    calls = []

    def stop_at_the_second_row(row, options):
        calls.append(row.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a time limit or Ctrl+C does part-way
        return measure(row, options)

    monkeypatch.setattr(bench_run, "run_row", stop_at_the_second_row)
    out = tmp_path / "bench"
    code = main(["bench", "--image_size", "64", "64", "--model", "hrnet_w18_small", "--batch_size", "1",
                 "--gradient_accumulation_steps", "1", "--warmup_updates", "1", "--measure_updates", "1",
                 "--num_workers", "0", "--device", "cpu", "--cache_dir", str(tmp_path / "cache"),
                 "--techniques", "current,channels_last", "--output_dir", str(out)])
    assert code == 130 and calls == ["current", "channels_last"]
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in report["rows"]] == ["current"]
    assert report["rows"][0]["result"]["images_per_s"] > 0
    assert "| current |" in (out / "bench.md").read_text(encoding="utf-8")
