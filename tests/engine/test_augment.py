"""Batched augmentation: image and landmarks move together, exactly; intensity stays sane; reproducible."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cephalo.codec import HeatmapCodec
from cephalo.engine.step.augment import (
    AUGMENTATION_LEVELS,
    BLACK,
    AugmentConfig,
    affine_theta,
    augment,
    warp_images,
    warp_points,
)
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD

WHITE = (1.0 - GREY_MEAN) / GREY_STD
FULL = AugmentConfig.for_level("full")
IDENTITY = AugmentConfig.for_level("none")
AFFINE_ONLY = dataclasses.replace(FULL, contrast=(1.0, 1.0), brightness=0.0, gamma=(1.0, 1.0), noise_std=0.0,
                                  blur_prob=0.0, p_affine=1.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normalised(v: torch.Tensor) -> torch.Tensor:
    return (v - GREY_MEAN) / GREY_STD


def grey(x: torch.Tensor) -> torch.Tensor:
    return x * GREY_STD + GREY_MEAN


def blob_images(landmarks: torch.Tensor, size: tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """``(B, 1, H, W)`` normalised images: black with a Gaussian blob (peak 1) centred at each landmark."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    p = landmarks.double()[..., None, None]  # (B, K, 2, 1, 1)
    d2 = (xs - p[:, :, 0]) ** 2 + (ys - p[:, :, 1]) ** 2  # (B, K, H, W)
    return normalised(torch.exp(-0.5 * d2 / sigma**2).sum(1, keepdim=True)).float()


def centroids(x: torch.Tensor, around: torch.Tensor, radius: int = 10) -> torch.Tensor:
    """Intensity-weighted centroid of ``grey(x)`` in a window around each point ``around (B, K, 2)``."""
    v = grey(x.double())[:, 0]
    out = torch.full(around.shape, math.nan, dtype=torch.float64)
    for b in range(around.shape[0]):
        for k in range(around.shape[1]):
            cx, cy = (int(round(float(c))) for c in around[b, k])
            y0, x0 = max(cy - radius, 0), max(cx - radius, 0)
            win = v[b, y0:cy + radius + 1, x0:cx + radius + 1]
            ys, xs = torch.meshgrid(torch.arange(win.shape[0]) + y0, torch.arange(win.shape[1]) + x0, indexing="ij")
            out[b, k] = torch.stack([(win * xs).sum(), (win * ys).sum()]) / win.sum()
    return out


def grid_landmarks(batch: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Six landmarks >= 22 px apart around the centre, at random sub-pixel positions."""
    h, w = size
    g = gen(seed)
    base = torch.tensor([[x * w, y * h] for y in (-0.2, 0.2) for x in (-0.28, 0.0, 0.28)])
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    return centre + base + torch.rand(batch, len(base), 2, generator=g) * 4 - 2


# ------------------------------------------------------------------------------------------ configuration


def test_levels_and_validation():
    assert AUGMENTATION_LEVELS == ("none", "light", "full")
    for name in AUGMENTATION_LEVELS:
        assert isinstance(AugmentConfig.for_level(name), AugmentConfig)
    assert IDENTITY.is_identity and not FULL.is_identity
    light = AugmentConfig.for_level("light")
    assert light.rotation_deg < FULL.rotation_deg and light.blur_prob == 0 and light.noise_std == 0
    with pytest.raises(ValueError, match="unknown augmentation level"):
        AugmentConfig.for_level("heavy")
    with pytest.raises(ValueError, match="scale"):
        dataclasses.replace(FULL, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="p_affine"):
        dataclasses.replace(FULL, p_affine=1.5)
    with pytest.raises(ValueError, match="noise_std"):
        dataclasses.replace(FULL, noise_std=-0.1)


def test_none_returns_inputs_and_identity_config_changes_nothing():
    x, lm = torch.randn(2, 1, 16, 16), torch.rand(2, 3, 2) * 15
    out_x, out_lm = augment(x, lm, IDENTITY, gen(0))
    assert out_x is x and out_lm is lm
    # an explicit identity config with the affine "on" (p_affine 1) is still the identity
    same = dataclasses.replace(IDENTITY, p_affine=1.0, blur_sigma=(0.7, 0.9))
    out_x, out_lm = augment(x, lm, same, gen(0))
    assert torch.equal(out_x, x) and torch.equal(out_lm, lm)
    # and the warp itself with an identity theta reproduces the image
    theta = affine_theta(torch.zeros(2), torch.ones(2), torch.zeros(2, 2), (16, 16))
    torch.testing.assert_close(warp_images(x, theta), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(warp_points(lm, theta, (16, 16)), lm, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ geometry


def test_integer_translation_is_an_exact_pixel_shift():
    h, w = 12, 20
    x = torch.randn(1, 1, h, w)
    theta = affine_theta(torch.zeros(1), torch.ones(1), torch.tensor([[3.0, -2.0]]), (h, w))
    out = warp_images(x, theta)
    torch.testing.assert_close(out[..., :h - 2, 3:], x[..., 2:, :w - 3], atol=1e-5, rtol=0)
    assert torch.allclose(out[..., :, :3], torch.tensor(BLACK)) and torch.allclose(out[..., h - 2:, :],
                                                                                   torch.tensor(BLACK))
    p = torch.tensor([[[0.0, 0.0], [4.25, 7.5], [19.0, 11.0]]])
    torch.testing.assert_close(warp_points(p, theta, (h, w)), p + torch.tensor([3.0, -2.0]), atol=1e-5, rtol=0)


def test_quarter_turn_matches_rot90_clockwise():
    s = 9
    x = torch.randn(1, 1, s, s)
    theta = affine_theta(torch.tensor([math.pi / 2]), torch.ones(1), torch.zeros(1, 2), (s, s))
    # positive angle = clockwise as displayed (y down): rot90 with k=-1 over (H, W)
    torch.testing.assert_close(warp_images(x, theta), torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)
    c = (s - 1) / 2
    p = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [2.3, 5.6]]])
    expected = torch.stack([c - (p[..., 1] - c), c + (p[..., 0] - c)], -1)  # (dx, dy) -> (-dy, dx)
    torch.testing.assert_close(warp_points(p, theta, (s, s)), expected, atol=1e-5, rtol=0)


def test_scale_and_rotation_in_pixel_space_on_a_non_square_image():
    h, w = 40, 100
    theta = affine_theta(torch.tensor([0.3]), torch.tensor([1.25]), torch.tensor([[4.0, -3.0]]), (h, w))
    c = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    p = torch.tensor([[[10.0, 5.0], [90.5, 33.25], [49.5, 19.5]]])
    rot = torch.tensor([[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]])
    expected = c + 1.25 * (p - c) @ rot.T + torch.tensor([4.0, -3.0])
    torch.testing.assert_close(warp_points(p, theta, (h, w)), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [(96, 128), (112, 80)])
def test_blob_centroids_follow_the_landmarks(seed, size):
    """The image and the landmarks get the same transform: each blob's centroid lands on its moved landmark."""
    lm = grid_landmarks(6, size, seed)
    x = blob_images(lm, size)
    out, moved = augment(x, lm, AFFINE_ONLY, gen(seed))
    h, w = size
    away = ((moved[..., 0] > 12) & (moved[..., 0] < w - 13) & (moved[..., 1] > 12) & (moved[..., 1] < h - 13))
    assert away.float().mean() > 0.8
    err = (centroids(out, moved) - moved.double()).norm(dim=-1)[away]
    assert float(err.max()) < 0.1, f"max centroid error {float(err.max()):.3f} px"
    # and the transforms were real: landmarks moved, and not by one common shift
    assert float((moved - lm).norm(dim=-1).mean()) > 1.0


@pytest.mark.parametrize("scales", [(1.0, 4.0), None])
def test_a_context_channel_turns_about_the_same_centre_and_shifts_in_its_own_pixels(scales):
    """Channel 1 shows channel 0 at 4x coarser pixels about the same centre (a patch with context): after the
    augmentation its blob is where the moved landmark is in its pixels, ``c + (p - c) / 4``. One scale for both
    channels (None) would shift it 4x too far."""
    size, f = (128, 128), 4.0
    c = torch.tensor([63.5, 63.5])
    lm = c + (torch.rand(16, 1, 2, generator=gen(5)) * 2 - 1) * 30  # (B, 1, 2) fine pixels
    x = torch.cat([blob_images(lm, size), blob_images(c + (lm - c) / f, size)], 1)  # (B, 2, H, W)
    out, moved = augment(x, lm, AFFINE_ONLY, gen(6), channel_scales=scales)
    expected = c + (moved.double() - c) / f
    err = (centroids(out[:, 1:], expected, radius=6) - expected).norm(dim=-1)
    fine = (centroids(out[:, :1], moved) - moved.double()).norm(dim=-1)
    assert float(fine.max()) < 0.1
    if scales:
        assert float(err.max()) < 0.1, f"max context centroid error {float(err.max()):.3f} px"
    else:
        assert float(err.max()) > 1.0
    with pytest.raises(ValueError, match="one scale per channel"):
        augment(x, lm, AFFINE_ONLY, gen(6), channel_scales=(1.0,))


def test_landmarks_move_by_a_similarity_within_the_configured_ranges():
    lm = grid_landmarks(64, (256, 256), 3)
    _, moved = augment(torch.zeros(64, 1, 256, 256), lm, AFFINE_ONLY, gen(4))
    d_in, d_out = lm[:, 1:] - lm[:, :1], moved[:, 1:] - moved[:, :1]  # vectors from landmark 0
    ratio = d_out.norm(dim=-1) / d_in.norm(dim=-1)  # (B, K-1): the same within a sample (isotropic)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=0)
    assert 0.85 - 1e-4 <= float(ratio.min()) and float(ratio.max()) <= 1.15 + 1e-4
    angle = torch.atan2(d_out[..., 1], d_out[..., 0]) - torch.atan2(d_in[..., 1], d_in[..., 0])
    angle = torch.rad2deg(torch.remainder(angle + math.pi, 2 * math.pi) - math.pi)
    torch.testing.assert_close(angle, angle[:, :1].expand_as(angle), atol=1e-2, rtol=0)
    assert float(angle.abs().max()) <= 15.0 + 1e-3 and float(angle.abs().max()) > 10.0  # the range is used


def test_landmarks_pushed_outside_stay_outside_and_are_masked():
    h, w = 64, 64
    cfg = dataclasses.replace(AFFINE_ONLY, rotation_deg=0.0, scale=(1.0, 1.0), translate=0.4)
    # one landmark 1 px inside each border, one in the middle, one missing
    lm = torch.tensor([[1.0, 30.0], [62.0, 30.0], [30.0, 1.0], [30.0, 62.0], [31.5, 31.5], [math.nan, 5.0]])
    lm = lm.expand(8, -1, -1).clone()
    _, moved = augment(torch.zeros(8, 1, h, w), lm, cfg, gen(5))
    shift = moved[:, 4] - lm[:, 4]  # a pure translation: every landmark moves by its sample's shift
    torch.testing.assert_close(moved[:, :5], lm[:, :5] + shift[:, None], atol=1e-4, rtol=0)
    assert torch.isnan(moved[:, 5]).any(-1).all()
    inside = HeatmapCodec((h, w), stride=4).inside(moved)
    bounds_ok = (moved[..., 0] >= -0.5) & (moved[..., 0] <= w - 0.5) & (moved[..., 1] >= -0.5) & (
        moved[..., 1] <= h - 0.5)
    assert torch.equal(inside, bounds_ok)  # nothing was clamped onto the border
    assert int((~inside[:, :4]).sum()) >= 8  # each sample pushed at least one landmark out
    assert bool(inside[:, 4].all()) and not bool(inside[:, 5].any())
    assert float(moved[..., :4, :].nan_to_num().abs().max()) > w  # true outside coordinates, far out


def test_p_affine_leaves_other_samples_exactly_as_they_were():
    lm = grid_landmarks(32, (64, 96), 6)
    x = torch.randn(32, 1, 64, 96)
    out, moved = augment(x, lm, dataclasses.replace(AFFINE_ONLY, p_affine=0.5), gen(7))
    same = (moved == lm).all(-1).all(-1)
    assert 0 < int(same.sum()) < 32
    assert torch.equal(out[same], x[same]) and not torch.equal(out[~same], x[~same])


# ----------------------------------------------------------------------------------------------- intensity


def test_full_level_keeps_values_finite_and_in_grey_range():
    x = torch.cat([normalised(torch.rand(6, 1, 64, 64)), torch.full((1, 1, 64, 64), BLACK),
                   torch.full((1, 1, 64, 64), WHITE)])
    out, _ = augment(x, torch.rand(8, 4, 2) * 63, FULL, gen(8))
    assert torch.isfinite(out).all()
    assert float(out.min()) >= BLACK - 1e-5 and float(out.max()) <= WHITE + 1e-5
    assert not torch.equal(out, x)


def test_gamma_in_grey_space_keeps_black_and_white():
    v = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4).expand(4, 1, 3, 4)
    cfg = dataclasses.replace(IDENTITY, gamma=(0.7, 1.5))
    out, _ = augment(normalised(v), torch.zeros(4, 1, 2), cfg, gen(9))
    g = grey(out)
    torch.testing.assert_close(g[..., 0], torch.zeros_like(g[..., 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(g[..., 3], torch.ones_like(g[..., 3]), atol=1e-5, rtol=0)
    gamma = torch.log(g[:, 0, 0, 2]) / math.log(0.5)  # the exponent each sample got
    torch.testing.assert_close(g[..., 1], (0.25 ** gamma).view(4, 1, 1).expand(4, 1, 3), atol=1e-5, rtol=0)
    assert float(gamma.min()) >= 0.7 - 1e-4 and float(gamma.max()) <= 1.5 + 1e-4 and float(gamma.std()) > 0


def test_blur_applies_to_a_random_subset_and_keeps_flat_areas():
    x = torch.full((16, 1, 32, 32), normalised(torch.tensor(0.2)).item())
    x[..., 16:] = normalised(torch.tensor(0.8)).item()  # a vertical edge
    cfg = dataclasses.replace(IDENTITY, blur_prob=0.5)
    out, _ = augment(x, torch.zeros(16, 1, 2), cfg, gen(10))
    blurred = ~(out == x).flatten(1).all(1)
    assert 0 < int(blurred.sum()) < 16
    torch.testing.assert_close(out[..., :12], x[..., :12], atol=1e-5, rtol=0)  # flat far from the edge
    edge = grey(out[blurred][:, 0, :, 15])
    assert bool(((edge > 0.2 + 1e-3) & (edge < 0.8)).all())


def test_noise_is_bounded_and_contrast_brightness_are_per_sample():
    x = normalised(torch.full((8, 1, 32, 32), 0.5))
    out, _ = augment(x, torch.zeros(8, 1, 2), dataclasses.replace(IDENTITY, noise_std=0.03), gen(11))
    diff = grey(out) - 0.5
    assert 0 < float(diff.std()) and float(diff.flatten(1).std(1).max()) < 0.035
    out, _ = augment(x, torch.zeros(8, 1, 2), dataclasses.replace(IDENTITY, brightness=0.1), gen(12))
    shift = grey(out).flatten(1)
    assert torch.allclose(shift, shift[:, :1], atol=1e-5) and float(shift[:, 0].std()) > 0.01
    assert float((shift[:, 0] - 0.5).abs().max()) <= 0.1 + 1e-5


# ------------------------------------------------------------------------------- reproducibility, formats


def test_reproducible_with_a_seed_and_different_between_seeds():
    lm = grid_landmarks(4, (64, 64), 13)
    x = torch.randn(4, 1, 64, 64)
    a, b, c = (augment(x, lm, FULL, gen(s)) for s in (14, 14, 15))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_shapes_dtypes_devices_memory_format_and_no_grad():
    x = torch.randn(3, 1, 48, 40)
    lm = torch.rand(3, 5, 2) * 39
    with torch.no_grad():
        out, moved = augment(x, lm, FULL, gen(16))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    assert moved.shape == lm.shape and moved.dtype == torch.float32 and moved.device == lm.device
    out64 = augment(x, lm.double(), FULL, gen(16))[1]
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), moved, atol=1e-4, rtol=0)
    # channels_last input (grey and multi-channel): same values, format kept
    for c in (1, 3):
        xc = torch.randn(3, c, 48, 40)
        ref = augment(xc, lm, FULL, gen(17))[0]
        cl = augment(xc.contiguous(memory_format=torch.channels_last), lm, FULL, gen(17))[0]
        torch.testing.assert_close(cl, ref, atol=1e-5, rtol=0)
        assert cl.is_contiguous(memory_format=torch.channels_last)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="landmarks"):
        augment(torch.zeros(2, 1, 8, 8), torch.zeros(3, 4, 2), FULL)
    with pytest.raises(ValueError, match="x must be"):
        augment(torch.zeros(2, 8, 8), torch.zeros(2, 4, 2), FULL)

