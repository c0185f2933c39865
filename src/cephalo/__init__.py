"""cephalo: cephalometric landmark detection, trained fast at full resolution.

Data flow, one package per stage (``DEVELOPERS.md`` has the map)::

    datasets -> preprocessing (letterbox, cache) -> codec (heatmaps) -> models -> artifact (the checkpoint)
      -> engine (training) / inference (predict, export) -> evaluation (MRE, SDR) and analysis -> cli

The Python API, a small stable surface (imported on first use: ``import cephalo`` does not import torch)::

    import cephalo

    config = cephalo.TrainConfig(dataset_path="data.csv", image_size=(512, 512), epochs=40, use_ema=True)
    result = cephalo.train(config)                       # what `cephalo train` does; result.run_dir / "best.pt"

    predictor = cephalo.load_predictor(result.run_dir / "best.pt")   # or an .onnx from `cephalo export`
    prediction = cephalo.predict_image(predictor, "scan.png", spacing_mm=0.1)
    prediction.landmarks["S"], prediction.landmarks_mm["S"]

    table = cephalo.read_landmark_table("preds/predictions.csv")     # what `cephalo predict` wrote
    records = cephalo.load_records(cephalo.DatasetSpec("data.csv"), "all")
    report = cephalo.score_predictions(records, table.names, dict(zip(table.images, table.landmarks))).report
    analysis = cephalo.analyze(table.landmarks, table.names, table.spacing_mm)   # SNA, ANB, ... per image
"""

__version__ = "0.1.0"

_EXPORTS = {  # name -> the module that owns it
    "TrainConfig": "cephalo.engine.config",
    "train": "cephalo.engine.run.pipeline",
    "load_predictor": "cephalo.inference.loading",
    "predict_image": "cephalo.inference.single",
    "Prediction": "cephalo.inference.single",
    "DatasetSpec": "cephalo.datasets.sources",
    "load_records": "cephalo.datasets.sources",
    "read_landmark_table": "cephalo.evaluation.predictions",
    "score_predictions": "cephalo.evaluation.evaluate",
    "analyze": "cephalo.analysis.analyze",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'cephalo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
