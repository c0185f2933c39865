"""Patches at a physical scale: exact positions, the same pixels from two spacings, each patch's own heatmap."""

import cv2
import numpy as np
import pytest
import torch

from cephalo.codec import HeatmapCodec
from cephalo.codec.patches import PatchGeometry, own_heatmaps
from cephalo.preprocessing.rescale import Rescale


def blob(size_hw, centre_xy, sigma):
    """``(1, 1, H, W)`` Gaussian of peak 255 at the sub-pixel ``centre_xy``."""
    h, w = size_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    g = torch.exp(-((xs - centre_xy[0]) ** 2 + (ys - centre_xy[1]) ** 2) / (2 * sigma**2))
    return (255 * g).float()[None, None]


@pytest.mark.parametrize("image_mm, sigma_px", [(0.2, 3.0), (0.1, 6.0), (0.4, 1.5)])
def test_a_landmark_lands_at_the_patch_centre_plus_its_offset(image_mm, sigma_px):
    geometry = PatchGeometry(size=48, mm_per_px=0.2)
    landmark = torch.tensor([[[61.37, 40.81]]])  # (1, 1, 2) image pixels
    centre = landmark + torch.tensor([[[2.3, -1.7]]])  # a rough position, 2.3 px right and 1.7 px up of it
    image = blob((96, 128), landmark[0, 0].tolist(), sigma_px)
    patch = geometry.cut(image, centre, torch.tensor([image_mm]))  # (1, 1, 1, P, P)
    assert patch.shape == (1, 1, 1, 48, 48)
    ratio = 0.2 / image_mm
    expected = torch.full((2,), geometry.centre) + (landmark[0, 0] - centre[0, 0]) / ratio
    codec = HeatmapCodec((48, 48), stride=1, sigma=sigma_px / ratio)
    found, _ = codec.decode(patch[:, 0])  # (1, 1, 2)
    assert torch.allclose(found[0, 0], expected, atol=0.01)
    assert torch.allclose(geometry.to_patch(landmark, centre, torch.tensor([image_mm]))[0, 0], expected, atol=1e-5)


def test_to_image_inverts_to_patch():
    geometry = PatchGeometry(size=64, mm_per_px=0.3)
    points, centres = torch.rand(2, 5, 2) * 100, torch.rand(2, 5, 2) * 100
    spacing = torch.tensor([0.1, 0.15])
    back = geometry.to_image(geometry.to_patch(points, centres, spacing), centres, spacing)
    assert torch.allclose(back, points, atol=1e-4)


def test_all_patches_of_a_batch_in_one_cut_match_one_at_a_time_and_outside_is_black():
    geometry = PatchGeometry(size=16, mm_per_px=0.25)
    images = torch.rand(2, 1, 40, 50) * 255
    centres = torch.tensor([[[10.0, 12.5], [45.2, 30.0], [-30.0, 5.0]], [[25.0, 20.0], [3.3, 37.1], [49.0, 0.0]]])
    spacing = torch.tensor([0.25, 0.125])
    together = geometry.cut(images, centres, spacing)  # (2, 3, 1, 16, 16)
    for i in range(2):
        for k in range(3):
            alone = geometry.cut(images[i : i + 1], centres[i : i + 1, k : k + 1], spacing[i : i + 1])
            assert torch.allclose(together[i, k], alone[0, 0], atol=1e-4)
    assert together[0, 2].abs().max() == 0  # a patch centred 30 px left of the image


def smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h // 16, w // 16)).astype(np.float32)
    return np.clip(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_the_same_anatomy_at_two_spacings_gives_the_same_patch():
    """An image stored at 0.1 mm and the same image stored at 0.2 mm (half the pixels): resampled to the patch
    scale and cut around the same landmark, the patches agree within interpolation error."""
    fine = smooth_image(480, 640)
    coarse = cv2.resize(fine, (320, 240), interpolation=cv2.INTER_AREA)
    landmark_fine = np.array([[301.3, 217.8]])  # original pixels of the 0.1 mm image
    landmark_coarse = (landmark_fine + 0.5) * 0.5 - 0.5  # the same point in the 0.2 mm image
    geometry = PatchGeometry(size=32, mm_per_px=0.4)
    patches = []
    for image, spacing, landmark in ((fine, 0.1, landmark_fine), (coarse, 0.2, landmark_coarse)):
        rescale = Rescale(image.shape, spacing, geometry.mm_per_px)
        scaled = torch.from_numpy(rescale.apply(image)).float()[None, None]
        centre = torch.from_numpy(rescale.forward(landmark)).float()[None]
        patches.append(geometry.cut(scaled, centre, torch.tensor([rescale.actual_mm_per_px]))[0, 0, 0])
    assert patches[0].shape == (32, 32)
    difference = (patches[0] - patches[1]).abs()
    assert difference.mean() < 1.5 and difference.max() < 8  # grey levels of 255
    assert (patches[0] - patches[0].mean()).abs().mean() > 10  # the patch has structure to compare


def test_rescale_maps_points_both_ways():
    rescale = Rescale((2400, 1935), 0.1, 0.3)
    assert rescale.size == (800, 645)
    points = np.array([[100.25, 2000.5], [0.0, 0.0]])
    assert np.allclose(rescale.inverse(rescale.forward(points)), points)
    assert rescale.actual_mm_per_px == pytest.approx(0.3, rel=1e-3)


def test_own_heatmaps_takes_each_patch_s_own_landmark():
    b, k = 2, 3
    heatmaps = torch.zeros(b * k, k, 4, 4)
    for i in range(b):
        for j in range(k):
            heatmaps[i * k + j, j] = 10 * i + j  # the own channel of image i's patch j
            heatmaps[i * k + j, (j + 1) % k] = -1  # another landmark's channel: ignored
    own = own_heatmaps(heatmaps, k)
    assert own.shape == (b, k, 4, 4)
    assert torch.equal(own[:, :, 0, 0], torch.tensor([[0.0, 1, 2], [10, 11, 12]]))
    with pytest.raises(ValueError, match="expected"):
        own_heatmaps(heatmaps[:5], k)


def test_geometry_refuses_nonsense():
    with pytest.raises(ValueError, match="integer >= 2"):
        PatchGeometry(size=1, mm_per_px=0.2)
    with pytest.raises(ValueError, match="positive"):
        PatchGeometry(size=32, mm_per_px=0)


def test_the_context_channel_shows_the_same_centre_at_f_times_coarser_pixels():
    """A blob at a known sub-pixel position: the fine channel finds it at centre + offset, the context channel at
    centre + offset / f; and the context channel equals a plain patch cut from the block-averaged image."""
    f = 4
    geometry = PatchGeometry(size=32, mm_per_px=0.2, context=f)
    landmark = torch.tensor([[[201.37, 150.81]]])
    centre = landmark + torch.tensor([[[9.3, -6.1]]])
    image = blob((320, 400), landmark[0, 0].tolist(), 8.0)
    patch = geometry.cut(image, centre, torch.tensor([0.2]))  # (1, 1, 2, P, P)
    assert patch.shape == (1, 1, 2, 32, 32)
    offset = landmark[0, 0] - centre[0, 0]
    fine, _ = HeatmapCodec((32, 32), stride=1, sigma=8.0).decode(patch[:, 0, :1])
    coarse, _ = HeatmapCodec((32, 32), stride=1, sigma=8.0 / f).decode(patch[:, 0, 1:])
    assert torch.allclose(fine[0, 0], geometry.centre + offset, atol=0.01)
    assert torch.allclose(coarse[0, 0], geometry.centre + offset / f, atol=0.05)  # box-averaging blurs a little
    pooled = torch.nn.functional.avg_pool2d(image, f)
    plain = PatchGeometry(size=32, mm_per_px=0.8).cut(pooled, (centre - (f - 1) / 2) / f, torch.tensor([0.8]))
    assert torch.allclose(patch[0, 0, 1], plain[0, 0, 0], atol=1e-3)
    assert geometry.channel_scales == (1.0, 4.0) and PatchGeometry(32, 0.2).channel_scales == (1.0,)


def test_a_context_factor_of_one_or_a_fraction_is_refused():
    for context in (1, 2.5, -2):
        with pytest.raises(ValueError, match="context"):
            PatchGeometry(size=32, mm_per_px=0.2, context=context)
