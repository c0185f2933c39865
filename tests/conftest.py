from __future__ import annotations

import os
from pathlib import Path

import pytest

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
