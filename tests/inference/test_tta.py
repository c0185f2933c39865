"""Test-time augmentation: each view's geometry is exact, views are mapped back to the letterbox before they are
combined, and the local stage's moved starts are converted from mm and combined."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cephalo.artifact.checkpoint import StageSpec
from cephalo.inference.predictor import Predictor
from cephalo.inference.tta import TestTimeAugmentation, View
from cephalo.preprocessing.letterbox import Letterbox
from cephalo.preprocessing.rescale import Rescale

SIZE = (128, 160)  # (H, W): not square, so that x and y cannot be swapped unnoticed


def blob(centre, size=SIZE, sigma=3.0) -> torch.Tensor:
    """``(1, 1, H, W)`` uint8 image of one bright Gaussian spot at ``centre`` ``(x, y)``."""
    y, x = torch.meshgrid(torch.arange(size[0], dtype=torch.float64), torch.arange(size[1], dtype=torch.float64),
                          indexing="ij")
    spot = torch.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    return (spot * 255).round().to(torch.uint8)[None, None]


def centroid(image: torch.Tensor) -> torch.Tensor:
    w = image[0, 0].double()
    y, x = torch.meshgrid(torch.arange(w.shape[0], dtype=torch.float64), torch.arange(w.shape[1], dtype=torch.float64),
                          indexing="ij")
    return torch.stack([(w * x).sum() / w.sum(), (w * y).sum() / w.sum()])


class SpotFinder(Predictor):
    """A model that finds the image's bright spot: its heatmap is the image averaged over each stride x stride cell
    (whose centre is the codec's heatmap pixel centre), so what it finds depends only on the pixels it is given."""

    def __init__(self):
        super().__init__(StageSpec("stub", ("spot",), SIZE, stride=4, sigma=2.0))

    def heatmaps(self, images):
        return F.avg_pool2d(images.float() / 255, self.spec.stride)


@pytest.mark.parametrize("view", [View(shift=(2.0, 0.0)), View(shift=(-1.5, 3.0)), View(scale=1.05),
                                  View(scale=0.95, shift=(2.0, -2.0))])
def test_a_view_moves_the_image_as_its_map_says_and_unwarp_inverts_the_map(view):
    truth = torch.tensor([70.3, 50.6], dtype=torch.float64)
    c = torch.tensor([(SIZE[1] - 1) / 2, (SIZE[0] - 1) / 2], dtype=torch.float64)
    moved = c + view.scale * (truth - c) + torch.tensor(view.shift, dtype=torch.float64)
    assert torch.allclose(centroid(view.warp(blob(truth.tolist()))), moved, atol=0.05)
    assert torch.allclose(view.unwarp(moved, SIZE), truth, atol=1e-9)
    assert view.warp(blob(truth.tolist())).dtype == torch.uint8


def test_the_identity_view_returns_the_images_untouched():
    image = blob((10.0, 20.0))
    assert View().warp(image) is image


@pytest.mark.parametrize("reduce", ["mean", "median"])
def test_predictions_with_views_are_mapped_back_to_the_original(reduce):
    truth = np.array([[[83.4, 61.2]]])
    image = blob(truth[0, 0].tolist())
    predictor = SpotFinder()
    plain, _ = predictor.predict(image, [Letterbox(SIZE, SIZE)])
    predictor.tta = TestTimeAugmentation.standard(stride=4, shift_heatmap_px=0.5, scales=(0.95, 1.05), reduce=reduce)
    assert len(predictor.tta.views) == 7
    augmented, confidence = predictor.predict(image, [Letterbox(SIZE, SIZE)])
    assert np.abs(augmented - truth).max() < 0.15
    assert np.abs(augmented - plain).max() < 0.15
    assert confidence.shape == (1, 1)


class LocalStub(SpotFinder):
    """A local stage that returns ``answer(starts)``: the identity, or the truth whatever the start."""

    def __init__(self, answer):
        super().__init__()
        self.local_spec = StageSpec("stub", ("spot",), (64, 64), stride=2, sigma=2.0, mm_per_px=0.2)
        self.answer, self.starts = answer, []

    def refine_scaled(self, images, spacing_mm, rough):
        self.starts.append(rough.clone())
        return self.answer(rough)


def test_local_starts_are_moved_in_mm_and_combined():
    rescale = Rescale((200, 300), spacing_mm=0.1, mm_per_px=0.2)  # the scaled image: 0.2 mm per pixel
    scaled = [(torch.zeros(100, 150, dtype=torch.uint8), rescale)]
    rough = np.array([[[120.0, 80.0]]])  # original pixels
    identity = LocalStub(lambda starts: starts)
    identity.tta = TestTimeAugmentation.standard(stride=4, shift_heatmap_px=0.0, local_offset_mm=1.0)
    assert np.allclose(identity.refine(rough, scaled), rough, atol=1e-4)  # symmetric moves average out
    moves = torch.stack(identity.starts)[:, 0, 0] - torch.tensor(rescale.forward(rough)[0, 0], dtype=torch.float32)
    assert torch.allclose(moves.abs().sum(-1), torch.tensor([0.0, 5, 5, 5, 5]))  # 1 mm = 5 pixels at 0.2 mm
    truth = torch.tensor([[[61.25, 40.5]]])
    perfect = LocalStub(lambda starts: truth.expand_as(starts))
    perfect.tta = identity.tta
    assert np.allclose(perfect.refine(rough, scaled), rescale.inverse(truth.numpy()), atol=1e-4)
