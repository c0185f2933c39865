from __future__ import annotations

import os
from pathlib import Path

import pytest

from cephalo.engine.config import TrainConfig
from tests.helpers import register_tiny_models, unregister_tiny_models, write_csv_dataset

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


@pytest.fixture
def two_stage_config(tmp_path, monkeypatch):
    """A tiny ``--refine`` run: ``tiny_global`` at 32x32 (stride 4), then ``tiny_local`` on 32 px patches of 0.2 mm
    from a 10-image CSV dataset of 0.1 mm pixels (8 training images: 4 updates of 2 per epoch in either stage),
    nothing random but the seed (no augmentation). The local stage's tiny model need not beat the global one."""
    import cephalo.engine.stages.local_stage as local_stage

    monkeypatch.setattr(TrainConfig, "check", lambda self: None)  # --model's choices were fixed at import
    monkeypatch.setattr(local_stage, "ONLY_IF_BETTER", False)
    register_tiny_models()
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(80, 60))  # 0.1 mm pixels
    yield TrainConfig(dataset_path=str(csv_path), model="tiny_global", image_size=(32, 32), head_stride=4,
                      batch_size=2, epochs=2, lr=1e-2, warmup_epochs=0.5, augmentation="none", num_workers=0,
                      val_fraction=0.2, output_dir=str(tmp_path / "runs"), run_name="run", progress=False,
                      cache_dir=str(tmp_path / "cache"), device="cpu", refine=True, local_model="tiny_local",
                      patch_size=32, patch_mm=0.2, local_epochs=2, local_batch=2, local_lr=1e-2,
                      local_warmup_epochs=0.5, local_augmentation="none")
    unregister_tiny_models()
