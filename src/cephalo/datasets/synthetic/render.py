"""Drawing a synthetic cephalogram: the pose (reference pixels -> image pixels), the painter, the layered drawing
of every structure, the finishing (blur, intensity field, contrast, noise) and :func:`render_cephalogram`."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .anatomy import _geometry, _landmarks_ref, _shape
from .shapes import _catmull_rom, _ellipse, _posterior_tooth, _rotate_about, _rotation
from .template import (
    _ATLAS,
    _IX,
    _U,
    _V,
    _VERTEBRA_ARCHES,
    _VERTEBRA_BODIES,
    GENERATOR_VERSION,
    REFERENCE_SIZE,
    _check_k,
    _check_size,
)


def _rng(seed: int) -> np.random.Generator:
    seed = int(seed)
    return np.random.default_rng(np.random.SeedSequence([abs(seed), int(seed < 0), GENERATOR_VERSION]))


# --------------------------------------------------------------------------------------------------------------
# Pose: reference pixels -> image pixels


def _pose(rng: np.random.Generator, bound: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A 2x3 affine (similarity) from reference pixels to image pixels that keeps ``bound`` 3% inside the image."""
    h, w = image_size
    rot = rng.uniform(-8.0, 8.0)
    sigma = rng.uniform(0.85, 1.15)
    t = rng.uniform(-0.05, 0.05, 2) * (_U, _V)
    fit = min(h / _V, w / _U)
    pad = np.array([(w - fit * _U) / 2.0, (h - fit * _V) / 2.0])
    c = np.array([0.56 * _U, 0.64 * _V])
    margin = 0.03
    lo, hi = np.array([margin * w, margin * h]), np.array([(1 - margin) * w, (1 - margin) * h])
    R = _rotation(rot)

    def continuous(points, sigma, t):  # image coordinates with the pixel edges at integers
        return fit * ((points - c) @ (sigma * R).T + c + t + 0.5) + pad

    pts = continuous(bound, sigma, t)
    span = pts.max(0) - pts.min(0)
    shrink = float(np.min((hi - lo) / np.maximum(span, 1e-9)))
    if shrink < 1.0:
        sigma *= shrink * 0.999
        pts = continuous(bound, sigma, t)
    shift = np.maximum(lo - pts.min(0), 0.0) + np.minimum(hi - pts.max(0), 0.0)
    t = t + shift / fit
    A = fit * sigma * R
    b = fit * (c - sigma * R @ c + t + 0.5) + pad - 0.5  # pixel-centre coordinates
    return np.hstack([A, b[:, None]])


# --------------------------------------------------------------------------------------------------------------
# Drawing


class _Painter:
    """cv2 drawing on a float32 canvas, with reference-pixel geometry mapped through the pose."""

    SHIFT = 4

    def __init__(self, canvas: np.ndarray, M: np.ndarray):
        self.canvas, self.M = canvas, M
        self.scale = float(math.sqrt(abs(np.linalg.det(M[:, :2]))))

    def _pts(self, pts: np.ndarray) -> np.ndarray:
        img = pts @ self.M[:, :2].T + self.M[:, 2]
        return np.round(img * (1 << self.SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def thick(self, ref_px: float) -> int:
        return max(1, int(round(ref_px * self.scale)))

    def fill(self, polys, value: float, target: np.ndarray | None = None) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else polys
        cv2.fillPoly(self.canvas if target is None else target, [self._pts(p) for p in polys], float(value),
                     cv2.LINE_AA, self.SHIFT)

    def line(self, polys, value: float, width: float, closed: bool = False, target: np.ndarray | None = None) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else polys
        cv2.polylines(self.canvas if target is None else target, [self._pts(p) for p in polys], closed, float(value),
                      self.thick(width), cv2.LINE_AA, self.SHIFT)


def _draw(G: dict[str, np.ndarray], X: np.ndarray, sz: dict[str, float], M: np.ndarray, image_size, rng) -> np.ndarray:
    h, w = image_size
    # tissue levels (attenuation, before the final intensity curve), varied a little per image
    jit = rng.uniform(0.9, 1.1, 6)
    bg, soft, brain, bone, cortex, tooth = (
        0.04 * jit[0], 0.30 * jit[1], 0.40 * jit[2], 0.50 * jit[3], 0.80 * jit[4], 0.36 * jit[5]
    )
    canvas = np.full((h, w), bg, np.float32)
    d = _Painter(canvas, M)

    # soft tissue, airway, neck
    d.fill(G["silhouette"], soft)
    d.fill(G["airway"], soft * 0.45)
    d.fill(G["hyoid"], bone * 1.2)
    # cervical vertebrae
    spine = X[_IX["spine"]][0]
    bodies = [_rotate_about(b, np.array([0.25 * _U, 0.6 * _V]), sz["spine_tilt"]) + spine for b in _VERTEBRA_BODIES]
    arches = [_rotate_about(a, np.array([0.25 * _U, 0.6 * _V]), sz["spine_tilt"]) + spine for a in _VERTEBRA_ARCHES]
    smooth_bodies = [_catmull_rom(b, 4, closed=True) for b in bodies]
    arches = [_catmull_rom(a, 5, closed=True) for a in arches]
    d.fill(arches, soft + 0.08)
    d.line(arches, soft + 0.16, 2.0, closed=True)
    d.fill(smooth_bodies, bone * 0.95)
    d.line(smooth_bodies, cortex * 0.85, 2.5, closed=True)
    for centre, (rx, ry) in zip(_ATLAS, [(9.0, 12.0), (14.0, 10.0)]):
        ring = _ellipse(_rotate_about(centre[0], np.array([0.25 * _U, 0.6 * _V]), sz["spine_tilt"]) + spine, rx, ry)
        d.fill(ring, bone)
        d.line(ring, cortex * 0.85, 2.5, closed=True)
    # cranium
    d.fill(G["intracranial"], brain)
    d.fill(G["vault_band"], cortex)
    d.line(G["diploe"], bone * 1.1, sz["vault_th"] * 0.3)
    d.line(G["vault_outer"], cortex * 1.08, 2.5)
    d.fill(G["frontal_sinus"], brain * 0.8)
    d.fill(G["petrous"], bone * 1.25)
    d.fill(G["clivus"], bone * 1.3)
    d.line([G["clivus_endo"], G["clivus_exo"]], cortex, 2.5)
    d.line([G["ant_base"]], cortex, 3.0)
    d.line([G["orbital_roof"]], bone * 1.3, 2.0)
    # sella turcica
    d.fill(G["sella_fossa"], brain * 0.85)
    d.line(G["sella"], cortex * 1.05, 3.0)
    # ear canal (porion at its top)
    d.fill(G["meatus"], soft * 0.8)
    d.line(G["meatus"], cortex, 2.0, closed=True)
    # midface: bone, cavities, orbit, fissure, palate
    d.fill(G["midface"], bone)
    d.fill(G["sinus"], brain * 0.85)
    d.line(G["key_ridge"], cortex * 0.85, 3.0)
    d.fill(G["orbit"], brain * 0.9)
    d.line(G["orbit"], cortex * 0.9, 2.5, closed=True)
    d.fill(G["ptm"], soft * 0.9)
    d.line(G["ptm"], cortex * 0.9, 2.0, closed=True)
    d.line(G["nasal_bone"], cortex, 4.0)
    d.line(G["piriform"], cortex * 0.8, 2.0)
    d.fill(G["palate"], cortex * 0.95)
    d.line([G["nasal_floor"], G["oral_palate"]], cortex * 1.05, 2.0)
    d.line(G["maxilla_front"], cortex * 1.05, 3.0)

    # additive layers (X-ray attenuation adds up): mandible, then the teeth of each jaw
    layer = np.zeros_like(canvas)
    mand = G["mandible"]
    mirror = mand + (sz["mirror_dx"], sz["mirror_dy"])  # the other half of the mandible, slightly offset
    d.fill(mand, 0.16, layer)
    d.line(mirror[: len(G["mandible_border"])], 0.10, 3.0, target=layer)
    d.line(G["mandible_border"], 0.38, 4.5, target=layer)
    d.line(G["mandible_lower"], 0.45, 6.0, target=layer)
    d.line(mand, 0.25, 2.5, closed=True, target=layer)
    d.line(G["symphysis_back"], 0.35, 4.0, target=layer)
    canvas += layer
    for jaw, sign in (("upper", -1.0), ("lower", 1.0)):
        layer.fill(0.0)
        line = G[f"{jaw}_teeth_line"]
        widths = (15.0, 16.0, 17.0, 24.0, 25.0)
        teeth = [
            _posterior_tooth(x, y, widths[i], 15.0 if i > 2 else 13.0, 30.0 if jaw == "upper" else 34.0, -sign)
            for i, (x, y) in enumerate(line)
        ]
        d.fill([t[0] for t in teeth], tooth * 0.35, layer)
        d.fill([t[1] for t in teeth], tooth * 0.9, layer)
        outline, crown, pulp = G[f"{jaw}_incisor"]
        d.fill(outline, tooth * 0.75, layer)
        d.fill(crown, tooth * 2.0, layer)
        d.line(pulp, tooth * 0.45, 2.0, target=layer)
        d.line(outline, tooth * 1.2, 1.5, closed=True, target=layer)
        canvas += layer
    return canvas


def _finish(canvas: np.ndarray, M: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, a smooth intensity field, contrast / brightness / gamma and noise; -> uint8."""
    h, w = canvas.shape
    scale = float(math.sqrt(abs(np.linalg.det(M[:, :2]))))
    sigma = rng.uniform(0.7, 1.5) * scale
    canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(sigma, 0.3), borderType=cv2.BORDER_REPLICATE)
    field = rng.standard_normal((5, 4)).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    ramp = rng.uniform(-0.08, 0.08)  # exposure falling off towards one side
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    canvas = canvas * (1.0 + 0.05 * field + ramp * x)
    gamma = rng.uniform(0.7, 1.4)
    contrast = rng.uniform(0.85, 1.2)
    brightness = rng.uniform(-0.06, 0.06)
    cv2.max(canvas, 0.0, dst=canvas)
    canvas = cv2.pow(canvas * np.float32(1.0 / 1.25), gamma)
    canvas = canvas * np.float32(contrast * 255.0) + np.float32((brightness + 0.02) * 255.0)
    noise_sd = rng.uniform(0.01, 0.03) * 255.0
    noise = rng.standard_normal((h, w), dtype=np.float32)
    canvas += noise * np.float32(noise_sd)
    np.clip(canvas, 0.0, 255.0, out=canvas)
    return (canvas + 0.5).astype(np.uint8)


def render_cephalogram(
    seed: int, image_size: tuple[int, int] = REFERENCE_SIZE, num_landmarks: int = 19
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic lateral cephalogram.

    Returns ``image`` ``(H, W)`` uint8 and ``landmarks`` ``(K, 2)`` float64, ``(x, y)`` in pixel coordinates with the
    centre of the top-left pixel at ``(0, 0)``; names from :func:`landmark_names`. ``num_landmarks <= 19`` takes the
    first K ISBI landmarks; more add the named points of :data:`EXTRA_LANDMARK_DESCRIPTIONS`, then points spread
    evenly over drawn contours (mandible, profile, orbit, maxilla, palate, incisors, sella, ...). The same seed
    gives the same image whatever ``num_landmarks`` is; every landmark is at least 3% of the size inside the image.
    """
    h, w = _check_size(image_size)
    k = _check_k(num_landmarks)
    rng = _rng(seed)
    X, sizes = _shape(rng)
    G = _geometry(X, sizes)
    landmarks_ref, bound = _landmarks_ref(X, G, k)
    M = _pose(rng, bound, (h, w))
    canvas = _draw(G, X, sizes, M, (h, w), rng)
    image = _finish(canvas, M, rng)
    landmarks = landmarks_ref @ M[:, :2].T + M[:, 2]
    return image, landmarks.astype(np.float64)
