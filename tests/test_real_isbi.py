"""On the 150 real ISBI 2015 training cephalograms of ../shared (skipped where they are absent)."""

import numpy as np
import pytest
import torch

from cephalo.codec import HeatmapCodec
from cephalo.datasets.csv_dataset import read_csv_dataset
from cephalo.evaluation.evaluate import score_predictions
from cephalo.preprocessing.cache import LetterboxCache
from cephalo.preprocessing.cached_dataset import CachedLandmarkDataset

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def prepared(isbi_train, tmp_path_factory):
    records, issues = read_csv_dataset(isbi_train / "landmarks.csv", "all")
    assert issues == [] and len(records) == 150
    result = LetterboxCache(tmp_path_factory.mktemp("cache"), (1024, 1024)).prepare(records, progress=False)
    assert result.issues == [] and len(result.records) == 150
    return result


def test_all_150_read_letterboxed_and_inverted_exactly(prepared):
    assert {e.source_size for e in prepared.entries} == {(2400, 1935)}
    dataset = CachedLandmarkDataset(prepared.records, prepared.entries)
    image, landmarks, _ = dataset[0]
    assert image.shape == (1, 1024, 1024) and image.dtype == torch.uint8 and image.float().std() > 10
    original = np.stack([r.landmarks for r in prepared.records])
    back = dataset.to_original(np.arange(150), dataset.landmarks.astype(np.float64))
    assert np.abs(back - original).max() < 1e-3  # float32 storage of letterboxed points; float64 maps exactly:
    exact = np.stack([e.letterbox.inverse(e.letterbox.forward(r.landmarks)) for r, e in zip(prepared.records, prepared.entries)])
    assert np.abs(exact - original).max() < 1e-4


def test_codec_round_trip_on_real_positions(prepared):
    dataset = CachedLandmarkDataset(prepared.records, prepared.entries)
    codec = HeatmapCodec((1024, 1024), stride=4, sigma=2.0)
    landmarks = torch.from_numpy(dataset.landmarks)  # (150, 19, 2) letterboxed pixels
    decoded, confidence = codec.decode(codec.encode(landmarks))
    error_heatmap_px = (decoded - landmarks).norm(dim=-1) / 4
    assert error_heatmap_px.max() < 0.05
    assert confidence.min() > 0.9


def test_evaluate_ground_truth_and_known_shift(prepared):
    records = prepared.records
    names = records[0].landmark_names
    truth = {r.case_id: r.landmarks for r in records}
    assert score_predictions(records, names, truth).report["overall"]["mre_mm"] == 0.0
    shifted = {k: v + np.array([6.0, -8.0]) for k, v in truth.items()}  # 10 px at 0.1 mm/px
    report = score_predictions(records, names, shifted).report
    assert report["overall"]["mre_mm"] == pytest.approx(1.0)
    assert report["overall"]["sdr"]["2mm"] == 100.0
