"""Batched on-device augmentation for the training step: one random affine per sample plus intensity changes.

The step calls ``x, landmarks = augment(x, landmarks, cfg, generator)`` on the normalised network input
``x (B, C, H, W)`` and ``landmarks (B, K, 2)`` (letterboxed pixels) before it encodes the targets. Everything runs
batched on ``x``'s device: no loop over samples, landmarks or pixels, and no host synchronisation.

Geometry. Each sample gets (with probability ``p_affine``) a rotation about the image centre, an isotropic scale
and a translation, all defined in pixel coordinates (``(0, 0)`` = centre of the top-left pixel, y down), so a
rotation is a true rotation and the scale is isotropic even for non-square images. The forward map is::

    p_out = c + s * R(angle) @ (p_in - c) + shift          c = ((W - 1) / 2, (H - 1) / 2)

The image is resampled with ``F.affine_grid`` + ``F.grid_sample`` (bilinear, ``align_corners=False``: its
normalised coordinates ``(2 * x + 1) / W - 1`` are exactly the pixel-centre convention), and the landmarks are
mapped with the inverse of the *same* ``theta`` matrix (:func:`warp_points`), so image and landmarks cannot
disagree. Landmarks that leave the image keep their true outside coordinates (no clamping): the codec's
``inside`` masks them in the loss. There is no flip: cephalograms face one way and landmarks have sides.
Uncovered areas are filled with black (the value uint8 0 normalises to), which is also the letterbox padding.

Intensity (in ``[0, 1]`` grey space: un-normalised with ``GREY_MEAN`` / ``GREY_STD``, changed, re-normalised):
gamma ``v ** g``, contrast about each image's mean, brightness offset, clamp to ``[0, 1]``, an occasional light
Gaussian blur (per-sample depthwise conv, chosen per sample with ``torch.where``), Gaussian noise, clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from cephalo.device import no_autocast
from cephalo.engine.config import AUGMENTATION_LEVELS
from cephalo.preprocessing.normalize import GREY_MEAN, GREY_STD

BLACK = -GREY_MEAN / GREY_STD  # normalised value of a black pixel (uint8 0): the fill outside the warped image
_BLUR_RADIUS = 2  # 5-tap kernel: enough for sigma <= 1 px (the taps at +-2 sigma carry the rest)


def _range(name: str, value, low_bound: float = -math.inf) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and low_bound <= lo <= hi):
        raise ValueError(f"{name} must be a finite range (low, high) with {low_bound} <= low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class AugmentConfig:
    """The ranges of one augmentation level; :meth:`for_level` gives the presets.

    Attributes:
        rotation_deg: angle ~ U(-r, r) degrees about the image centre (positive = clockwise as displayed).
        scale: isotropic scale, log-uniform in ``(low, high)`` (zooming in and out equally likely).
        translate: shift ~ U(-t, t) * W in x and U(-t, t) * H in y (a fraction of the size).
        contrast: factor ~ U(low, high) about each image's mean grey value.
        brightness: offset ~ U(-b, b) in ``[0, 1]`` grey units.
        gamma: exponent, log-uniform in ``(low, high)``, applied to ``[0, 1]`` grey values (keeps black and white).
        noise_std: each image's Gaussian noise std ~ U(0, noise_std) in ``[0, 1]`` grey units.
        blur_prob: probability that an image is blurred with a Gaussian of std ~ U(*blur_sigma) pixels.
        p_affine: probability that an image gets the random affine at all (the others keep their exact pixels).
        blur_sigma: range of the blur's standard deviation in pixels (5-tap kernel).
    """

    rotation_deg: float
    scale: tuple[float, float]
    translate: float
    contrast: tuple[float, float]
    brightness: float
    gamma: tuple[float, float]
    noise_std: float
    blur_prob: float
    p_affine: float
    blur_sigma: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "translate", "brightness", "noise_std"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        for name in ("blur_prob", "p_affine"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        for name, bound in (("scale", 1e-6), ("contrast", 0.0), ("gamma", 1e-6), ("blur_sigma", 1e-6)):
            object.__setattr__(self, name, _range(name, getattr(self, name), bound))

    @classmethod
    def for_level(cls, name: str) -> "AugmentConfig":
        """The preset of level ``name`` (one of :data:`AUGMENTATION_LEVELS`).

        Why these values (lateral cephalograms, letterboxed to the network input):

        - rotation: the cephalostat's ear rods fix the head, but the Frankfort plane still tilts by a few degrees
          between patients and visits, more between machines; +-15 deg covers that without teaching the model
          poses it never meets (``light``: +-5 deg).
        - scale 0.85-1.15: radiographic magnification differs by ~8-13 % between machines, and skull sizes
          (children to adults) vary more; letterboxing has normalised only the image size, not the anatomy.
        - translate 8 %: the field of view and collimation differ between devices and patients.
        - contrast 0.7-1.3, brightness +-0.1, gamma 0.7-1.5: exposure, film versus digital sensors and vendor
          processing curves change the grey levels far more than the geometry; gamma keeps black and white fixed.
        - noise up to 0.03 (~8 grey levels): quantum noise of low-dose digital sensors.
        - blur (p 0.2, sigma 0.5-1 px): scanned films and small patient motion; light, since landmarks sit on edges.
        - ``p_affine`` < 1: some images keep their exact, unresampled pixels, the sharpness seen at test time.
        - ``none``: nothing (validation-like input); ``light``: for small data sets or fine-tuning, where strong
          augmentation costs more accuracy than it gains.
        """
        if name == "none":
            return cls(rotation_deg=0.0, scale=(1.0, 1.0), translate=0.0, contrast=(1.0, 1.0), brightness=0.0,
                       gamma=(1.0, 1.0), noise_std=0.0, blur_prob=0.0, p_affine=0.0)
        if name == "light":
            return cls(rotation_deg=5.0, scale=(0.95, 1.05), translate=0.03, contrast=(0.9, 1.1), brightness=0.05,
                       gamma=(0.9, 1.1), noise_std=0.0, blur_prob=0.0, p_affine=0.8)
        if name == "full":
            return cls(rotation_deg=15.0, scale=(0.85, 1.15), translate=0.08, contrast=(0.7, 1.3), brightness=0.1,
                       gamma=(0.7, 1.5), noise_std=0.03, blur_prob=0.2, p_affine=0.8)
        raise ValueError(f"unknown augmentation level {name!r}; choose one of {', '.join(AUGMENTATION_LEVELS)}")

    @property
    def has_affine(self) -> bool:
        return self.p_affine > 0 and (self.rotation_deg > 0 or self.scale != (1.0, 1.0) or self.translate > 0)

    @property
    def has_intensity(self) -> bool:
        return (self.contrast != (1.0, 1.0) or self.brightness > 0 or self.gamma != (1.0, 1.0)
                or self.noise_std > 0 or self.blur_prob > 0)

    @property
    def is_identity(self) -> bool:
        return not (self.has_affine or self.has_intensity)


# ----------------------------------------------------------------------------------------------- geometry


def affine_theta(angle: Tensor, scale: Tensor, shift: Tensor, size: tuple[int, int]) -> Tensor:
    """``theta (B, 2, 3)`` for ``F.affine_grid`` of the pixel-space map ``p_out = c + s R (p_in - c) + shift``.

    Args:
        angle: ``(B,)`` radians (positive = clockwise as displayed, y down). scale: ``(B,)``. shift: ``(B, 2)``
            pixels ``(dx, dy)``. size: ``(H, W)``.
    Returns:
        ``theta`` maps output to input in ``align_corners=False`` normalised coordinates ``pn = D^-1 (p - c)``,
        ``D = diag(W / 2, H / 2)``: ``theta = [D^-1 M^-1 D | -D^-1 M^-1 shift]`` with ``M = s R``.
    The sizes enter as Python numbers, never as tensors made on the host (a blocking copy on a GPU).
    """
    h, w = size
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # M^-1 = R(-angle) / s = [[cos, sin], [-sin, cos]]
    dx, dy = shift.unbind(-1)
    a = torch.stack([torch.stack([cos, sin * (h / w)], -1), torch.stack([-sin * (w / h), cos], -1)], -2)
    t = torch.stack([-(cos * dx + sin * dy) / (w / 2.0), -(cos * dy - sin * dx) / (h / 2.0)], -1)
    return torch.cat([a, t.unsqueeze(-1)], dim=-1)


def warp_points(points: Tensor, theta: Tensor, size: tuple[int, int]) -> Tensor:
    """Where ``points (B, K, 2)`` (input pixels) land in the image resampled with ``theta (B, 2, 3)``.

    ``grid_sample`` reads output pixel ``pn_out`` from input ``A pn_out + t``, so a point moves to
    ``A^-1 (pn_in - t)``. Computed in float32 (float64 if given), returned in ``points``' dtype; NaN stays NaN
    and nothing is clamped.
    """
    h, w = size
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    theta = theta.to(device=points.device, dtype=dtype)
    x, y = points.to(dtype).unbind(-1)  # (B, K) each
    # normalised coordinates: pn = (p - ((size - 1) / 2)) / (size / 2), minus the translation
    xn = (x - (w - 1) / 2.0) / (w / 2.0) - theta[:, 0, 2, None]
    yn = (y - (h - 1) / 2.0) / (h / 2.0) - theta[:, 1, 2, None]
    a00, a01, a10, a11 = (theta[:, i, j, None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    det = a00 * a11 - a01 * a10
    x_out = (a11 * xn - a01 * yn) / det * (w / 2.0) + (w - 1) / 2.0
    y_out = (a00 * yn - a10 * xn) / det * (h / 2.0) + (h - 1) / 2.0
    return torch.stack([x_out, y_out], -1).to(points.dtype)


def warp_images(x: Tensor, theta: Tensor, fill: float = BLACK) -> Tensor:
    """Resample ``x (B, C, H, W)`` with ``theta (B, 2, 3)`` (bilinear, pixel centres); outside reads ``fill``."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


# ---------------------------------------------------------------------------------------------- intensity


def _blur(v: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of each image of ``v (B, C, H, W)`` with its own ``sigma (B,)``: one depthwise
    conv per axis over all ``B * C`` planes, edges replicated (no dark rim)."""
    b, c, h, w = v.shape
    offsets = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, device=v.device, dtype=v.dtype)
    taps = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    taps = (taps / taps.sum(-1, keepdim=True)).repeat_interleave(c, dim=0)  # (B * C, k)
    planes = F.pad(v.reshape(1, b * c, h, w), (_BLUR_RADIUS,) * 4, mode="replicate")
    planes = F.conv2d(planes, taps[:, None, None, :], groups=b * c)
    planes = F.conv2d(planes, taps[:, None, :, None], groups=b * c)
    return planes.reshape(b, c, h, w)


def _uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * u


def _log_uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    return torch.exp(_uniform(u, math.log(lo), math.log(hi)))


class Draws(NamedTuple):
    """The uniforms ``U(0, 1)`` of one batch, each ``(B,)``: one per random choice and sample. All of them are drawn
    for every level, in this order, so a seed gives the same geometry whatever the intensity settings."""

    angle: Tensor
    scale: Tensor
    shift_x: Tensor
    shift_y: Tensor
    warp: Tensor  # < p_affine: this sample is warped
    contrast: Tensor
    brightness: Tensor
    gamma: Tensor
    noise_std: Tensor
    blur: Tensor  # < blur_prob: this sample is blurred
    blur_sigma: Tensor

    @classmethod
    def sample(cls, batch: int, device: torch.device, generator: torch.Generator | None) -> "Draws":
        u = torch.rand(batch, len(cls._fields), generator=generator, device=device, dtype=torch.float32)
        return cls(*u.unbind(-1))


# -------------------------------------------------------------------------------------------------- entry


@torch.no_grad()
def augment(x: Tensor, landmarks: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None,
            channel_scales: tuple[float, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Randomly transform a batch on its device; the same affine moves each image and its landmarks.

    Args:
        x: ``(B, C, H, W)`` normalised float images (``(v - GREY_MEAN) / GREY_STD``), any device and memory format.
        landmarks: ``(B, K, 2)`` ``(x, y)`` pixels of ``x`` (centre of the top-left pixel at 0); NaN = missing.
        cfg: the ranges (:meth:`AugmentConfig.for_level`).
        generator: a ``torch.Generator`` on ``x``'s device for reproducible draws; ``None`` -> the default one.
        channel_scales: ``(C,)`` each channel's pixel in channel 0's pixels, for channels of one centre at
            different scales (a patch with context, :class:`cephalo.codec.patches.PatchGeometry`): the rotation
            and scale about the centre are the same in all of them, the shift is divided by the channel's scale.
            ``None``: one scale.
    Returns:
        ``(x, landmarks)``: same shapes, dtypes, device and memory format. Landmarks moved outside the image keep
        their outside coordinates. An identity config (level ``none``) returns the inputs themselves.
    """
    if cfg.is_identity:
        return x, landmarks
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a floating (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    if landmarks.ndim != 3 or landmarks.shape[0] != x.shape[0] or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, K, 2) with B = {x.shape[0]}, got {tuple(landmarks.shape)}")
    b, c, h, w = x.shape
    if channel_scales is not None and len(channel_scales) != c:
        raise ValueError(f"channel_scales must give one scale per channel ({c}), got {channel_scales!r}")
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    u = Draws.sample(b, x.device, generator)
    with no_autocast(x.device):
        out = x
        if cfg.has_affine:
            out, landmarks = _random_affine(x, landmarks, cfg, u, channel_scales)
        if cfg.has_intensity:
            out = _random_intensity(out, cfg, u, generator)
    out = out.to(x.dtype)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format), landmarks


def _random_affine(x: Tensor, landmarks: Tensor, cfg: AugmentConfig, u: Draws,
                   channel_scales: tuple[float, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Rotation, scale and shift of the samples drawn for warping; the others keep their exact pixels. The
    landmarks are in channel 0's pixels."""
    _, _, h, w = x.shape
    rotation = math.radians(cfg.rotation_deg)
    angle = _uniform(u.angle, -rotation, rotation)
    scale = _log_uniform(u.scale, *cfg.scale)
    shift = torch.stack([_uniform(u.shift_x, -cfg.translate, cfg.translate) * w,
                         _uniform(u.shift_y, -cfg.translate, cfg.translate) * h], -1)
    theta = affine_theta(angle, scale, shift, (h, w))
    warp = u.warp < cfg.p_affine  # (B,)
    if channel_scales is None or all(s == 1 for s in channel_scales):
        warped = warp_images(x, theta)
    else:  # one channel at a time (two, for a patch with context): the same turn, the shift in its own pixels
        warped = torch.cat([warp_images(x[:, i:i + 1], affine_theta(angle, scale, shift / s, (h, w)))
                            for i, s in enumerate(channel_scales)], 1)
    out = torch.where(warp[:, None, None, None], warped, x)
    moved = warp_points(landmarks, theta, (h, w))
    return out, torch.where(warp.to(landmarks.device)[:, None, None], moved, landmarks)


def _random_intensity(x: Tensor, cfg: AugmentConfig, u: Draws, generator: torch.Generator | None) -> Tensor:
    """Gamma, contrast, brightness, blur and noise in ``[0, 1]`` grey space, per sample."""
    v = (x * GREY_STD + GREY_MEAN).clamp(0.0, 1.0)
    per_image = (x.shape[0], 1, 1, 1)

    def each(values: Tensor) -> Tensor:  # (B,) -> broadcastable over an image
        return values.to(v.dtype).view(per_image)

    if cfg.gamma != (1.0, 1.0):
        v = v.pow(each(_log_uniform(u.gamma, *cfg.gamma)))
    if cfg.contrast != (1.0, 1.0):
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        v = (v - mean) * each(_uniform(u.contrast, *cfg.contrast)) + mean
    if cfg.brightness > 0:
        v = v + each(_uniform(u.brightness, -cfg.brightness, cfg.brightness))
    v = v.clamp(0.0, 1.0)
    if cfg.blur_prob > 0:
        blurred = _blur(v, _uniform(u.blur_sigma, *cfg.blur_sigma).to(v.dtype))
        v = torch.where((u.blur < cfg.blur_prob).view(per_image), blurred, v)
    if cfg.noise_std > 0:
        noise = torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
        v = (v + noise * each(_uniform(u.noise_std, 0.0, cfg.noise_std))).clamp(0.0, 1.0)
    return (v - GREY_MEAN) / GREY_STD
