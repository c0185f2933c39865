"""The run folder's logs: every epoch in metrics.jsonl and metrics.csv, validation columns included even when the
first epochs did not validate, and kept across a resume."""

from __future__ import annotations

import csv
import dataclasses
import json

from cephalo.engine.run.pipeline import train
from cephalo.engine.run.run_log import RunLog
from tests.helpers import TinyHeatmapNet


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_metrics_csv_keeps_the_validation_columns_with_val_every_2(tiny_config):
    config = dataclasses.replace(tiny_config, epochs=3, val_every=2)
    train(config, TinyHeatmapNet())
    run = f"{config.output_dir}/run"
    jsonl = [json.loads(line) for line in open(f"{run}/metrics.jsonl", encoding="utf-8")]
    rows = _csv_rows(f"{run}/metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and len(jsonl) == 3
    assert "val_mre_mm" in rows[0] and "val_sdr_2mm" in rows[0]  # in the header, though epoch 1 did not validate
    assert rows[0]["val_mre_mm"] == "" and float(rows[1]["val_mre_mm"]) == jsonl[1]["val_mre_mm"]
    assert float(rows[2]["val_mre_mm"]) == jsonl[2]["val_mre_mm"]  # the last epoch always validates

    resumed = train(dataclasses.replace(config, epochs=4, resume=f"{run}/last.pt"), TinyHeatmapNet())
    rows = _csv_rows(f"{run}/metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and resumed.metrics["epoch"] == 4
    assert float(rows[3]["val_mre_mm"]) == resumed.metrics["val_mre_mm"]


def test_a_new_column_rewrites_the_csv_and_a_cut_jsonl_line_is_skipped(tmp_path):
    log = RunLog(tmp_path, {"a": 1})
    log.log_epoch({"epoch": 1, "loss": 0.5})
    log.log_epoch({"epoch": 2, "loss": 0.4, "val": 1.5, "note": None, "errors": [1, 2]})  # lists are not scalars
    log.close()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,loss,val,note", "1,0.5,,", "2,0.4,1.5,"]
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"epoch": 3, "lo')  # a crash in the middle of a line
    again = RunLog(tmp_path, {"a": 1})
    again.log_epoch({"epoch": 3, "loss": 0.3})
    assert [r["epoch"] for r in _csv_rows(tmp_path / "metrics.csv")] == ["1", "2", "3"]
    assert not list(tmp_path.glob(".*.tmp"))  # the rewrite is atomic
