"""The local stage: patches around jittered positions carry their landmark where the targets say, a perfect local
model gives zero loss whatever its other channels hold, and refinement with perfect heatmaps returns the truth."""

import dataclasses

import numpy as np
import torch
from torch import nn

from cephalo.artifact.refine import refine_landmarks
from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry
from cephalo.engine.step.local_patches import draw_jitter, local_inputs, local_loss
from cephalo.precision import resolve_precision
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD
from tests.codec.test_patches import blob


class KnownHeatmaps(nn.Module):
    """A 'local model' that outputs given heatmaps ``(B * K, K, h, w)``, whatever its input (shape checked)."""

    def __init__(self, heatmaps: torch.Tensor, patch: int):
        super().__init__()
        self.register_buffer("heatmaps", heatmaps)
        self.weight = nn.Parameter(torch.zeros(()))  # a parameter: refine finds the device from it
        self.patch = patch

    def forward(self, x):
        assert x.shape == (self.heatmaps.shape[0], 1, self.patch, self.patch)
        return self.heatmaps + 0 * self.weight


def test_patches_carry_their_landmark_at_the_target_position():
    geometry = PatchGeometry(size=32, mm_per_px=0.2)
    truth = torch.tensor([[[40.3, 30.6], [70.8, 52.1]]])  # (1, K=2, 2) pixels of a 0.2 mm image
    image = blob((96, 120), truth[0, 0].tolist(), 2.0) + blob((96, 120), truth[0, 1].tolist(), 2.0)
    jitter_mm = torch.tensor([[[0.9, -0.5], [-1.3, 0.4]]])
    x, points = local_inputs(image, torch.tensor([0.2]), truth, jitter_mm, geometry, torch.device("cpu"))
    assert x.shape == (2, 1, 32, 32) and points.shape == (2, 1, 2)
    expected = geometry.centre - jitter_mm[0] / 0.2  # the patch centre is the truth moved by the jitter
    assert torch.allclose(points[:, 0], expected, atol=1e-4)
    grey = (x * GREY_STD + GREY_MEAN) * 255  # back to grey levels: a blob under each target
    found, _ = HeatmapCodec((32, 32), stride=1, sigma=2.0).decode(grey[:, :1])
    assert torch.allclose(found[:, 0], points[:, 0], atol=0.02)


def test_a_perfect_local_model_has_zero_loss_whatever_its_other_channels_hold():
    codec = HeatmapCodec((32, 32), stride=2, sigma=2.0)
    points = torch.tensor([[[15.5, 14.0]], [[10.2, 20.7]], [[16.0, 16.0]], [[9.0, 12.5]]])  # (B*K = 2*2, 1, 2)
    own = codec.encode(points)  # (4, 1, 16, 16)
    heatmaps = torch.rand(4, 2, 16, 16)  # other landmarks' channels: noise, never supervised
    heatmaps[[0, 2], 0], heatmaps[[1, 3], 1] = own[[0, 2], 0], own[[1, 3], 0]
    model = KnownHeatmaps(heatmaps, 32)
    precision = resolve_precision(torch.device("cpu"), False, "auto")
    loss = local_loss(model, codec, precision, torch.zeros(4, 1, 32, 32), points, num_landmarks=2)
    assert float(loss.detach()) == 0.0
    heatmaps[0, 0] = 0  # the own channel wrong: the loss sees it
    assert float(local_loss(model, codec, precision, torch.zeros(4, 1, 32, 32), points, 2).detach()) > 0


def test_refinement_with_perfect_heatmaps_returns_the_truth():
    geometry = PatchGeometry(size=48, mm_per_px=0.25)
    codec = HeatmapCodec((48, 48), stride=2, sigma=2.0)
    truth = torch.tensor([[[50.2, 40.7], [80.1, 33.3], [20.6, 70.9]], [[33.3, 44.4], [60.0, 61.5], [90.4, 10.2]]])
    spacing = torch.tensor([0.25, 0.2])
    rough = truth + torch.tensor([[[2.5, -1.0], [-3.2, 0.7], [0.0, 4.1]], [[1.1, 1.1], [-2.0, -2.0], [3.0, 0.0]]])
    in_patch = geometry.to_patch(truth, rough, spacing)  # (2, 3, 2)
    heatmaps = torch.zeros(6, 3, 24, 24)
    own = codec.encode(in_patch.reshape(6, 1, 2))  # (6, 1, 24, 24)
    for i in range(6):
        heatmaps[i, i % 3] = own[i, 0]
    refined, confidence = refine_landmarks(KnownHeatmaps(heatmaps, 48), codec, geometry,
                                           torch.zeros(2, 1, 100, 120), spacing, rough)
    assert torch.allclose(refined, truth, atol=0.02) and (confidence > 0.9).all()  # a peak between pixels reads a little under 1


def test_jitter_draws_each_landmark_from_its_own_errors():
    errors = torch.stack([torch.full((50, 2), 1.0), torch.full((50, 2), -2.0)], 1)  # (N=50, K=2, 2)
    errors[3, 0] = float("nan")
    drawn = draw_jitter(errors, 200, torch.Generator().manual_seed(0))
    assert drawn.shape == (200, 2, 2)
    assert set(drawn[:, 0].flatten().tolist()) <= {1.0, 0.0} and (drawn[:, 1] == -2.0).all()


def test_only_landmarks_whose_refined_validation_error_is_lower_are_refined(monkeypatch):
    import cephalo.engine.stages.local_stage as local_stage

    refined = np.array([[1.0, 3.0, 2.0], [1.2, 2.8, 2.0]])
    global_ = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
    assert local_stage.choose_landmarks(refined, global_).tolist() == [True, False, False]  # a tie is not better
    monkeypatch.setattr(local_stage, "ONLY_IF_BETTER", False)
    assert local_stage.choose_landmarks(refined, global_).all()


def test_a_predictor_moves_only_the_landmarks_its_local_stage_refines():
    from cephalo.artifact.checkpoint import StageSpec
    from cephalo.inference.predictor import Predictor
    from cephalo.preprocessing.rescale import Rescale

    class MovesEverything(Predictor):
        def refine_scaled(self, images, spacing_mm, rough):
            return rough + 5.0

    names = ("S", "N", "Go")
    predictor = MovesEverything(StageSpec("stub", names, (64, 64), stride=4, sigma=2.0),
                                StageSpec("stub", names, (64, 64), stride=2, sigma=2.0, mm_per_px=0.2,
                                          refined_landmarks=("S", "N")))
    rescale = Rescale((200, 300), spacing_mm=0.2, mm_per_px=0.2)
    rough = np.array([[[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]])
    found = predictor.refine(rough, [(torch.zeros(200, 300, dtype=torch.uint8), rescale)])
    assert np.allclose(found[0, :2], rough[0, :2] + 5.0, atol=1e-4) and np.allclose(found[0, 2], rough[0, 2])
    spec = predictor.local_spec
    assert StageSpec.from_dict(spec.to_dict(), "x") == spec  # kept in checkpoints and ONNX metadata


def test_patch_samples_pickle_without_their_pixels_and_draw_the_same_jitter_anywhere(tmp_path):
    """Loader workers (Windows' spawn) get the samples pickled: the memory-mapped images travel as their files, and
    an image's jitter in an epoch is the same in any process, whatever else it drew before."""
    import pickle

    from cephalo.datasets.csv_dataset import read_csv_dataset
    from cephalo.engine.stages.local_data import PatchSamples, collate_patch_samples
    from cephalo.preprocessing.cache import PatchScaleCache
    from cephalo.preprocessing.patch_scale import ScaledImages
    from tests.helpers import write_csv_dataset

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=4, size=(80, 60))
    records, _ = read_csv_dataset(csv_path)
    images, _ = ScaledImages.read(records, PatchScaleCache(tmp_path / "cache", 0.2), progress=False)
    pool = torch.randn(5, 3, 2)
    samples = PatchSamples(images, pool, extra_mm=0.3, seed=7)
    blob = pickle.dumps(samples)
    assert len(blob) < 4000  # 4 images of 40 x 30 pixels would be 4800 bytes themselves
    again = pickle.loads(blob)
    torch.manual_seed(123)  # another process's random stream: the jitter does not depend on it
    for key in [(0, 1), (3, 2)]:
        a, b = samples[key], again[key]
        assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4])) and a[4] == b[4]
    assert not torch.equal(samples[(0, 1)][3], samples[(1, 1)][3])  # another epoch, another jitter
    batch = collate_patch_samples([samples[(0, i)] for i in range(4)])
    assert batch[0].shape == (4, 1, 40, 30) and batch[3].shape == (4, 3, 2) and batch[4].tolist() == [0, 1, 2, 3]


def test_patches_that_cannot_do_the_local_stages_job_are_warned_about_before_it_trains(two_stage_config, capsys):
    from cephalo.engine.run.pipeline import train
    from cephalo.engine.stages.local_stage import implausible_patches

    errors = np.array([[0.5, 1.0], [0.7, 9.0]])  # (N=2, K=2) mm: one of four beyond a 6.4 mm patch's half-width
    assert implausible_patches(32, 0.2, 1.5, errors) == []
    coarse, narrow = implausible_patches(32, 2.0, 1.5, errors * 40)
    assert "--patch_mm 2: the local stage's pixels are no finer than the global stage's (1.5 mm" in coarse
    assert "64 mm patches: 50% of the global model's validation errors are beyond their half-width (32 mm)" in narrow
    # a whole 8 x 6 mm image in a few patch pixels: said at the start of the stage, which then trains as asked
    result = train(dataclasses.replace(two_stage_config, patch_mm=4.0, local_epochs=1))
    out = capsys.readouterr().out
    assert "warning: --patch_mm 4: the local stage's pixels are no finer than the global stage's" in out
    assert out.index("warning: --patch_mm 4") < out.index("local epoch   1:") and result.best_written
