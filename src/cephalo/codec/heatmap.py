"""Heatmap codec: landmarks <-> Gaussian heatmaps, decoded with DARK sub-pixel refinement.

Coordinates in the input image are continuous pixel coordinates with the centre of the top-left pixel at
``(0, 0)``, x right, y down; points are ``(..., 2)`` as ``(x, y)``. At output stride ``s`` heatmap pixel ``j``
covers input pixels ``[j*s, (j+1)*s)``, so its centre is at input coordinate ``j*s + (s-1)/2``::

    u = (x + 0.5) / s - 0.5        x = (u + 0.5) * s - 0.5

This is the ``cv2.resize`` convention (as in :mod:`cephalo.preprocessing.letterbox`): encode and decode use the
same mapping, so a round trip has no half-pixel bias (the "unbiased" data processing of UDP).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from cephalo.device import no_autocast

_LOG_EPS = 1e-10  # floor before the log: far below any value near a real peak, so it only tames zeros/negatives
_MIN_CURVATURE = 1e-5  # log-space curvature a real peak must exceed (sigma=200 heatmap px still does); flat maps
# and float rounding in the blur (~1e-7) do not, so they get no offset


def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _points(points) -> Tensor:
    """``(..., 2)`` points as a float tensor: float64 stays float64, everything else becomes float32.

    Half precision is promoted because its spacing at 1024 is a whole pixel.
    """
    p = torch.as_tensor(points)
    if p.ndim == 0 or p.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {tuple(p.shape)}")
    return p.to(torch.float64 if p.dtype == torch.float64 else torch.float32)


class HeatmapCodec:
    """Encode landmarks as Gaussian heatmaps and decode heatmaps back to landmarks.

    Args:
        input_size: ``(H, W)`` of the network input, each divisible by ``stride``.
        stride: output stride ``s >= 1``; heatmaps are ``(H // s, W // s)``.
        sigma: standard deviation of the target Gaussian, in heatmap pixels.
        refine: ``"dark"`` (argmax + DARK Taylor refinement) or ``"none"`` (argmax only).
        blur_kernel: odd size of the Gaussian kernel DARK blurs with before the Taylor step. The kernel's standard
            deviation is ``sigma`` (a blurred target stays a Gaussian with the same centre). ``None`` ->
            ``2 * ceil(3 * sigma) + 1`` (13 for sigma 2: +-3 sigma); ``0`` or ``1`` -> no blur.

    Shapes: landmarks ``(B, K, 2)`` in input pixels, heatmaps ``(B, K, Hh, Wh)``, confidences ``(B, K)``. Any
    number of leading dimensions works in place of ``(B, K)``.
    """

    def __init__(self, input_size: tuple[int, int], stride: int = 4, sigma: float = 2.0, refine: str = "dark",
                 blur_kernel: int | None = None) -> None:
        stride = _as_int("stride", stride)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        size = tuple(input_size)
        if len(size) != 2:
            raise ValueError(f"input_size must be (height, width), got {input_size!r}")
        size = (_as_int("input_size height", size[0]), _as_int("input_size width", size[1]))
        if min(size) <= 0:
            raise ValueError(f"input_size must be positive, got {size}")
        if size[0] % stride or size[1] % stride:
            raise ValueError(f"input_size {size} is not divisible by stride {stride}: "
                             f"heatmap pixels would not tile the input exactly")
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma}")
        if refine not in ("dark", "none"):
            raise ValueError(f"refine must be 'dark' or 'none', got {refine!r}")
        blur_kernel = 2 * math.ceil(3 * sigma) + 1 if blur_kernel is None else _as_int("blur_kernel", blur_kernel)
        if blur_kernel < 0 or (blur_kernel > 1 and blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be odd (or 0/1 for no blur), got {blur_kernel}")

        self.input_size, self.stride, self.sigma, self.refine = size, stride, sigma, refine
        self.blur_kernel = blur_kernel if blur_kernel > 1 else 0
        r = self.blur_kernel // 2
        taps = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
        self._blur_taps = {torch.device("cpu"): (taps / taps.sum()).float()}  # (blur_kernel,), sums to 1

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(Hh, Wh) = (H // stride, W // stride)``."""
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def to_heatmap_coords(self, points) -> Tensor:
        """Input pixels ``(..., 2)`` -> heatmap pixels ``(..., 2)`` (float64 stays float64, else float32)."""
        return (_points(points) + 0.5) / self.stride - 0.5

    def to_input_coords(self, points) -> Tensor:
        """Heatmap pixels ``(..., 2)`` -> input pixels ``(..., 2)``; the exact inverse of :meth:`to_heatmap_coords`."""
        return (_points(points) + 0.5) * self.stride - 0.5

    def inside(self, landmarks) -> Tensor:
        """``(B, K)`` bool: the landmark is finite and within ``[-0.5, W-0.5] x [-0.5, H-0.5]`` (input pixels)."""
        p = _points(landmarks)
        h, w = self.input_size
        x, y = p[..., 0], p[..., 1]
        return torch.isfinite(p).all(-1) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)

    @torch.no_grad()
    def encode(self, landmarks: Tensor) -> Tensor:
        """Render target heatmaps.

        Args:
            landmarks: ``(B, K, 2)`` in input pixels, any device. NaN/inf marks a missing landmark.
        Returns:
            ``(B, K, Hh, Wh)`` on the same device; the landmarks' floating dtype (float32 for integers). Each map is
            ``exp(-((u - u0)^2 + (v - v0)^2) / (2 sigma^2))`` with peak 1 at the exact sub-pixel position; missing
            landmarks give all-zero maps. Landmarks outside the image give a truncated (possibly empty) Gaussian:
            mask them in the loss with :meth:`inside`.
        """
        landmarks = torch.as_tensor(landmarks)
        out_dtype = landmarks.dtype if landmarks.is_floating_point() else torch.float32
        with no_autocast(landmarks.device):
            uv = self.to_heatmap_coords(landmarks)  # (B, K, 2), float32 (float64 if given)
            finite = torch.isfinite(uv).all(-1, keepdim=True)  # (B, K, 1)
            uv = torch.where(finite, uv, 0.0)  # keeps exp() finite; the map is zeroed through gx below
            hh, wh = self.heatmap_size
            xs = torch.arange(wh, device=uv.device, dtype=uv.dtype)
            ys = torch.arange(hh, device=uv.device, dtype=uv.dtype)
            # Separable: the 2-D Gaussian is the outer product of two 1-D ones, so exp() runs on Hh + Wh values.
            gx = torch.exp(-0.5 * ((xs - uv[..., :1]) / self.sigma) ** 2) * finite  # (B, K, Wh)
            gy = torch.exp(-0.5 * ((ys - uv[..., 1:]) / self.sigma) ** 2)  # (B, K, Hh)
            return gy.to(out_dtype).unsqueeze(-1) * gx.to(out_dtype).unsqueeze(-2)  # (B, K, Hh, Wh)

    @torch.no_grad()
    def decode(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmaps ``(B, K, Hh, Wh)`` (any float dtype) -> landmarks ``(B, K, 2)`` float32 in input pixels and
        confidences ``(B, K)`` float32 = each map's maximum (before any blur).

        The landmark is the first maximal pixel in ``torch.argmax`` order plus, with ``refine="dark"``, the DARK
        offset, clamped to ``[-1, 1]`` heatmap pixels per axis. For an argmax within ``blur_kernel // 2`` pixels of
        the border the offset comes from the unblurred map, with one-sided differences on the border pixel, so that
        no padding enters. Where the log-map is not clearly curved down around the peak (flat or all-zero maps,
        plateaus, saddles) the offset is 0: a flat map decodes to the centre of heatmap pixel ``(0, 0)``, i.e. input
        ``((s-1)/2, (s-1)/2)``, with confidence equal to its value (0 for an all-zero map). Finite input never
        yields NaN; non-finite heatmap values are not supported.
        """
        hm = torch.as_tensor(heatmaps)
        if hm.ndim < 2 or tuple(hm.shape[-2:]) != self.heatmap_size:
            raise ValueError(f"heatmaps must have shape (B, K, {self.heatmap_size[0]}, {self.heatmap_size[1]}), "
                             f"got {tuple(hm.shape)}")
        lead, (h, w) = hm.shape[:-2], self.heatmap_size
        with no_autocast(hm.device):
            flat = hm.detach().float().reshape(-1, h * w)  # (N, Hh*Wh), N = B*K
            index = flat.argmax(-1)  # (N,) first maximum on ties
            confidence = flat.gather(1, index[:, None])[:, 0]
            ix, iy = index % w, index // w
            uv = torch.stack((ix, iy), -1).float()  # (N, 2) heatmap pixels
            if self.refine == "dark":
                uv = uv + self._dark_offset(flat, ix, iy)
            return self.to_input_coords(uv).reshape(*lead, 2), confidence.reshape(lead)

    def _taps_on(self, device: torch.device) -> Tensor:
        """The blur taps on ``device``, copied there once: a copy per decode would be a host sync per batch."""
        if device not in self._blur_taps:
            self._blur_taps[device] = self._blur_taps[torch.device("cpu")].to(device)
        return self._blur_taps[device]

    def _dark_offset(self, flat: Tensor, ix: Tensor, iy: Tensor) -> Tensor:
        """DARK offset ``(N, 2)`` from the argmax ``(ix, iy)``: Newton step ``-H^-1 g`` on the blurred log-map."""
        h, w = self.heatmap_size
        # Centre of the 3x3 difference stencil. At the border it moves one pixel inward, so the quadratic is fitted
        # to real pixels only (one-sided differences) and not to padding; elsewhere it is the argmax itself.
        cx = ix.clamp(1, w - 2) if w >= 3 else ix
        cy = iy.clamp(1, h - 2) if h >= 3 else iy
        # Gather only the patch the blurred 3x3 stencil needs (blurring it gives the same 3x3 values as blurring the
        # whole map, at a fraction of the cost). Clamped indices = a replicate-padded map, without the padded copy.
        r = self.blur_kernel // 2
        d = torch.arange(-r - 1, r + 2, device=flat.device)  # (P,), P = 2r + 3
        rows = (cy[:, None] + d).clamp(0, h - 1)  # (N, P)
        cols = (cx[:, None] + d).clamp(0, w - 1)
        patch = flat.gather(1, (rows[:, :, None] * w + cols[:, None, :]).flatten(1))  # (N, P*P)
        patch = patch.view(-1, 1, 2 * r + 3, 2 * r + 3)
        values = patch[:, :, r : r + 3, r : r + 3]  # (N, 1, 3, 3) raw stencil
        if r:  # depthwise separable Gaussian blur (DARK's modulation), 'valid' -> (N, 1, 3, 3)
            taps = self._taps_on(flat.device)
            blurred = F.conv2d(F.conv2d(patch, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
            # Where the blur would read padding, keep the raw map: padding is not the Gaussian's tail (replicate or
            # zero padding biased the peak by up to 1.5 px), and the raw log-map of a clean Gaussian is exact.
            padded = (cx <= r) | (cx >= w - 1 - r) | (cy <= r) | (cy >= h - 1 - r)
            values = torch.where(padded.view(-1, 1, 1, 1), values, blurred)
        L = values.clamp_min(_LOG_EPS).log().view(-1, 3, 3)  # L[:, 1 + dy, 1 + dx]
        dx = (L[:, 1, 2] - L[:, 1, 0]) / 2
        dy = (L[:, 2, 1] - L[:, 0, 1]) / 2
        dxx = L[:, 1, 2] - 2 * L[:, 1, 1] + L[:, 1, 0]
        dyy = L[:, 2, 1] - 2 * L[:, 1, 1] + L[:, 0, 1]
        dxy = (L[:, 2, 2] - L[:, 2, 0] - L[:, 0, 2] + L[:, 0, 0]) / 4
        det = dxx * dyy - dxy * dxy
        # -H^-1 g with H = [[dxx, dxy], [dxy, dyy]], relative to the stencil centre, then to the argmax.
        step = torch.stack((dxy * dy - dyy * dx, dxy * dx - dxx * dy), -1) / det[:, None]
        offset = step + torch.stack((cx - ix, cy - iy), -1)
        # Only a clear maximum (negative-definite Hessian above rounding noise) gets an offset.
        ok = (dxx < -_MIN_CURVATURE) & (det > _MIN_CURVATURE**2) & torch.isfinite(offset).all(-1)
        return torch.where(ok[:, None], offset, 0.0).clamp(-1.0, 1.0)
