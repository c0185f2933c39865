from __future__ import annotations

import os
from pathlib import Path

import pytest

from cephalo.engine.config import TrainConfig
from tests.helpers import write_csv_dataset

REPO = Path(__file__).resolve().parents[1]
ISBI_TRAIN = Path(os.environ.get("CEPHALO_ISBI_TRAIN", REPO.parent / "shared" / "data" / "isbi2015-train"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """No test writes into the user's cache folder."""
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path_factory.mktemp("cephalo-cache")))


@pytest.fixture(scope="session")
def isbi_train() -> Path:
    """The shared real ISBI 2015 training images (CSV layout); tests using it skip where it is absent."""
    if not (ISBI_TRAIN / "landmarks.csv").is_file():
        pytest.skip(f"real data not found at {ISBI_TRAIN}")
    return ISBI_TRAIN


@pytest.fixture
def tiny_config(tmp_path):
    """A 10-image CSV dataset at 32x32 and a 2-epoch run of batch 2, nothing random (no augmentation)."""
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(40, 32))
    return TrainConfig(dataset_path=str(csv_path), augmentation="none",  # exact comparisons
                       image_size=(32, 32), head_stride=4, batch_size=2, epochs=2, lr=1e-2,
                       warmup_epochs=0.5, num_workers=0, val_fraction=0.2, output_dir=str(tmp_path / "runs"),
                       run_name="run", progress=False, cache_dir=str(tmp_path / "cache"))
