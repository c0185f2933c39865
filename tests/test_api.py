"""The Python API of cephalo/__init__.py: lazy (``import cephalo`` imports no torch), and its docstring's example
runs: train from a config, load a predictor, predict an image (path or array) like cephalo predict does, read and
score predictions, analyze them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import cephalo
from tests.inference.test_predict import predict, trained  # noqa: F401  (the module's fixture: a 1-epoch run)


def test_import_cephalo_imports_no_torch():
    code = "import sys, cephalo; print('torch' in sys.modules, 'numpy' in sys.modules, cephalo.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "False"] and out[2] == cephalo.__version__


def test_every_export_resolves_and_an_unknown_name_is_an_attribute_error():
    for name in cephalo.__all__:
        assert getattr(cephalo, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cephalo.nothing  # noqa: B018


def test_the_docstrings_example_runs(trained, tmp_path):  # noqa: F811
    from cephalo.image_io import read_grey

    predictor = cephalo.load_predictor(trained["checkpoint"], device="cpu")
    image = trained["csv"].parent / "images" / "002.png"
    from_path = cephalo.predict_image(predictor, image, spacing_mm=0.1)
    from_array = cephalo.predict_image(predictor, read_grey(image), spacing_mm=0.1)
    np.testing.assert_allclose(from_path.points, from_array.points)
    assert set(from_path.landmarks) == set(predictor.landmark_names)
    x, y = from_path.landmarks["S"]
    assert from_path.landmarks_mm["S"] == pytest.approx((x * 0.1, y * 0.1))
    assert cephalo.predict_image(predictor, image).landmarks_mm is None  # a PNG has no spacing of its own

    out = tmp_path / "preds"
    assert predict(["--checkpoint", trained["checkpoint"], trained["csv"], "--out", out]) == 0
    as_cli = json.loads((out / "002.json").read_text())["landmarks"]["S"]
    assert (as_cli["x"], as_cli["y"]) == pytest.approx((x, y), abs=2e-3)  # what cephalo predict gives

    table = cephalo.read_landmark_table(out / "predictions.csv")
    records = cephalo.load_records(cephalo.DatasetSpec(str(trained["csv"])), "all")
    report = cephalo.score_predictions(records, table.names, dict(zip(table.images, table.landmarks))).report
    assert report["images"] == 6 and report["overall"]["mre_mm"] > 0
    analysis = cephalo.analyze(table.landmarks, table.names, table.spacing_mm)  # S, N, Me only: little to measure
    assert analysis.values["SNA"].shape == (6,) and "needs A" in analysis.unavailable["SNA"]


def test_train_from_a_config_object(tmp_path):
    from tests.helpers import write_csv_dataset

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6, size=(80, 64))
    config = cephalo.TrainConfig(dataset_path=str(csv_path), image_size=(64, 64), epochs=1, batch_size=2,
                                 augmentation="none", num_workers=0, progress=False, val_fraction=0.34,
                                 output_dir=str(tmp_path / "runs"), run_name="api", cache_dir=str(tmp_path / "cache"))
    result = cephalo.train(config)
    assert (result.run_dir / "best.pt").is_file()


def python_examples(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_example(code: str, workdir, monkeypatch) -> None:
    """Run a documentation example as written, in a folder holding what it names (``data.csv``, ``scan.png``,
    ``preds/predictions.csv``), with its training made tiny (the only change: TrainConfig's sizes and epochs)."""
    import shutil

    from cephalo.engine.config import TrainConfig
    from tests.helpers import write_csv_dataset

    monkeypatch.chdir(workdir)
    csv_path, _ = write_csv_dataset(workdir, n=6, size=(80, 64))
    csv_path.rename(workdir / "data.csv")
    shutil.copyfile(workdir / "images" / "000.png", workdir / "scan.png")
    (workdir / "preds").mkdir()
    shutil.copyfile(workdir / "data.csv", workdir / "preds" / "predictions.csv")
    shutil.copytree(workdir / "images", workdir / "preds" / "images")

    def tiny(**options):
        return TrainConfig(**{**options, "image_size": (64, 64), "epochs": 1, "batch_size": 2, "num_workers": 0,
                              "augmentation": "none", "progress": False, "val_fraction": 0.34,
                              "cache_dir": str(workdir / "cache")})

    monkeypatch.setattr(cephalo, "TrainConfig", tiny, raising=False)
    exec(compile(code, "<docs example>", "exec"), {"__name__": "docs_example"})


def test_the_api_pages_example_runs_as_written(tmp_path, monkeypatch):
    from tests.test_docs import ROOT

    examples = python_examples((ROOT / "docs" / "api.md").read_text(encoding="utf-8"))
    assert examples, "docs/api.md has no python example"
    for code in examples:
        run_example(code, tmp_path, monkeypatch)


def test_a_broken_example_fails_the_check(tmp_path, monkeypatch):
    from tests.test_docs import ROOT

    code = python_examples((ROOT / "docs" / "api.md").read_text(encoding="utf-8"))[0]
    with pytest.raises(AttributeError, match="predict_images"):
        run_example(code.replace("cephalo.predict_image(", "cephalo.predict_images("), tmp_path, monkeypatch)
