"""The cross-validation script that every accuracy decision rests on (benchmarks/cross_validation.py): each image is
predicted exactly once, by a model that neither trained on it nor, with --nested, chose its best epoch by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_csv_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("nested", [False, True])
def test_every_image_is_predicted_once_out_of_fold(nested, tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(64, 64))
    out = tmp_path / "cv"
    train = ["--image_size", "64", "64", "--epochs", "1", "--batch_size", "2", "--num_workers", "0", "--device", "cpu",
             "--cache_dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cross_validation.py"), "--dataset_path", str(csv_path),
                    "--folds", "2", "--out", str(out), *(["--nested"] if nested else []), "--", *train],
                         check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    summary = json.loads((out / "cv.json").read_text())
    assert summary["nested"] is nested and [f["images"] for f in summary["folds"]] == [5, 5]
    rows = (out / "oof_predictions.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(f"images/{i:03d}.png" for i in range(10))
    # nested: the 5 held-out images do not validate; validation is drawn from the other 5
    expected = "(4 / 1 images)" if nested else "(5 / 5 images)"
    assert run.stdout.count(expected) == 2, run.stdout
