"""Drawing a synthetic cephalogram: the pose (reference pixels -> image pixels), the painter, the layered drawing
of every structure, the finishing (blur, intensity field, contrast, noise) and :func:`render_cephalogram`."""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from .anatomy import Curve, contours, landmarks_ref, varied_template
from .shapes import rotation
from .template import GENERATOR_VERSION, REFERENCE_SIZE, U, V, check_k, check_size


def _rng(seed: int) -> np.random.Generator:
    """The random generator of one image. The generator version is part of the seed, so a new version draws other
    images, and the sign too, so that ``-seed`` and ``seed`` differ."""
    seed = int(seed)
    return np.random.default_rng(np.random.SeedSequence([abs(seed), int(seed < 0), GENERATOR_VERSION]))


# --------------------------------------------------------------------------------------------------------------
# Pose: reference pixels -> image pixels


def _pose(rng: np.random.Generator, bound: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A 2x3 affine (similarity) from reference pixels to image pixels that keeps ``bound`` ``(n, 2)`` 3% inside the
    image: a random rotation, scale and shift about the head's centre, scaled to fit the image size (centred), then
    shrunk and shifted as little as needed to keep the margin."""
    h, w = image_size
    degrees = rng.uniform(-8.0, 8.0)
    sigma = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-0.05, 0.05, 2) * (U, V)
    fit = min(h / V, w / U)
    pad = np.array([(w - fit * U) / 2.0, (h - fit * V) / 2.0])
    centre = np.array([0.56 * U, 0.64 * V])
    margin = 0.03
    lo, hi = np.array([margin * w, margin * h]), np.array([(1 - margin) * w, (1 - margin) * h])
    turn = rotation(degrees)

    def continuous(points, sigma, shift):  # image coordinates with the pixel edges at integers
        return fit * ((points - centre) @ (sigma * turn).T + centre + shift + 0.5) + pad

    pts = continuous(bound, sigma, shift)
    span = pts.max(0) - pts.min(0)
    shrink = float(np.min((hi - lo) / np.maximum(span, 1e-9)))
    if shrink < 1.0:
        sigma *= shrink * 0.999
        pts = continuous(bound, sigma, shift)
    into_margin = np.maximum(lo - pts.min(0), 0.0) + np.minimum(hi - pts.max(0), 0.0)
    shift = shift + into_margin / fit
    linear = fit * sigma * turn
    offset = fit * (centre - sigma * turn @ centre + shift + 0.5) + pad - 0.5  # pixel-centre coordinates
    return np.hstack([linear, offset[:, None]])


# --------------------------------------------------------------------------------------------------------------
# Drawing


class _Painter:
    """cv2 drawing on a float32 canvas ``(H, W)``, with reference-pixel geometry mapped through the pose ``(2, 3)``;
    ``target`` draws on another canvas of the same size instead (an additive layer)."""

    SHIFT = 4  # sub-pixel bits of the cv2 coordinates: smooth anti-aliased edges at any scale

    def __init__(self, canvas: np.ndarray, pose: np.ndarray):
        self.canvas, self.pose = canvas, pose
        self.scale = float(math.sqrt(abs(np.linalg.det(pose[:, :2]))))

    def _pts(self, pts: np.ndarray) -> np.ndarray:
        img = pts @ self.pose[:, :2].T + self.pose[:, 2]
        return np.round(img * (1 << self.SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def thick(self, ref_px: float) -> int:
        """A line width of ``ref_px`` reference pixels, in image pixels (at least 1)."""
        return max(1, int(round(ref_px * self.scale)))

    def fill(self, polys, value: float, target: np.ndarray | None = None) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else polys
        cv2.fillPoly(self.canvas if target is None else target, [self._pts(p) for p in polys], float(value),
                     cv2.LINE_AA, self.SHIFT)

    def line(self, polys, value: float, width: float, closed: bool = False, target: np.ndarray | None = None) -> None:
        polys = [polys] if isinstance(polys, np.ndarray) else polys
        cv2.polylines(self.canvas if target is None else target, [self._pts(p) for p in polys], closed, float(value),
                      self.thick(width), cv2.LINE_AA, self.SHIFT)


class _Tissues(NamedTuple):
    """Attenuation of each tissue, before the final intensity curve."""

    background: float
    soft: float
    brain: float
    bone: float
    cortex: float
    tooth: float


def _tissue_levels(rng: np.random.Generator) -> _Tissues:
    """The tissue levels, varied a little per image."""
    jitter = rng.uniform(0.9, 1.1, 6)
    return _Tissues(0.04 * jitter[0], 0.30 * jitter[1], 0.40 * jitter[2], 0.50 * jitter[3], 0.80 * jitter[4],
                    0.36 * jitter[5])


def _draw(curves: dict[str, Curve], sizes: dict[str, float], pose: np.ndarray, image_size: tuple[int, int],
          rng: np.random.Generator) -> np.ndarray:
    """The attenuation canvas ``(H, W)`` float32: every structure painted back to front, then the mandible and the
    teeth added on top."""
    levels = _tissue_levels(rng)
    canvas = np.full(image_size, levels.background, np.float32)
    painter = _Painter(canvas, pose)
    _paint_neck(painter, curves, levels)
    _paint_cranium(painter, curves, sizes, levels)
    _paint_midface(painter, curves, levels)
    _add_mandible_and_teeth(painter, curves, levels)
    return canvas


def _paint_neck(painter: _Painter, curves: dict[str, Curve], levels: _Tissues) -> None:
    """The soft-tissue silhouette, the airway, the hyoid and the cervical vertebrae."""
    painter.fill(curves["silhouette"], levels.soft)
    painter.fill(curves["airway"], levels.soft * 0.45)
    painter.fill(curves["hyoid"], levels.bone * 1.2)
    arches, bodies = curves["vertebra_arches"], curves["vertebra_bodies"]
    painter.fill(arches, levels.soft + 0.08)
    painter.line(arches, levels.soft + 0.16, 2.0, closed=True)
    painter.fill(bodies, levels.bone * 0.95)
    painter.line(bodies, levels.cortex * 0.85, 2.5, closed=True)
    for ring in curves["atlas"]:
        painter.fill(ring, levels.bone)
        painter.line(ring, levels.cortex * 0.85, 2.5, closed=True)


def _paint_cranium(painter: _Painter, curves: dict[str, Curve], sizes: dict[str, float], levels: _Tissues) -> None:
    """The brain case, the vault bone, the cranial base, the sella turcica and the ear canal."""
    painter.fill(curves["intracranial"], levels.brain)
    painter.fill(curves["vault_band"], levels.cortex)
    painter.line(curves["diploe"], levels.bone * 1.1, sizes["vault_th"] * 0.3)
    painter.line(curves["vault_outer"], levels.cortex * 1.08, 2.5)
    painter.fill(curves["frontal_sinus"], levels.brain * 0.8)
    painter.fill(curves["petrous"], levels.bone * 1.25)
    painter.fill(curves["clivus"], levels.bone * 1.3)
    painter.line([curves["clivus_endo"], curves["clivus_exo"]], levels.cortex, 2.5)
    painter.line([curves["ant_base"]], levels.cortex, 3.0)
    painter.line([curves["orbital_roof"]], levels.bone * 1.3, 2.0)
    painter.fill(curves["sella_fossa"], levels.brain * 0.85)
    painter.line(curves["sella"], levels.cortex * 1.05, 3.0)
    painter.fill(curves["meatus"], levels.soft * 0.8)
    painter.line(curves["meatus"], levels.cortex, 2.0, closed=True)


def _paint_midface(painter: _Painter, curves: dict[str, Curve], levels: _Tissues) -> None:
    """The midface bone, its cavities (sinus, orbit, pterygomaxillary fissure), the nasal bone and the palate."""
    painter.fill(curves["midface"], levels.bone)
    painter.fill(curves["sinus"], levels.brain * 0.85)
    painter.line(curves["key_ridge"], levels.cortex * 0.85, 3.0)
    painter.fill(curves["orbit"], levels.brain * 0.9)
    painter.line(curves["orbit"], levels.cortex * 0.9, 2.5, closed=True)
    painter.fill(curves["ptm"], levels.soft * 0.9)
    painter.line(curves["ptm"], levels.cortex * 0.9, 2.0, closed=True)
    painter.line(curves["nasal_bone"], levels.cortex, 4.0)
    painter.line(curves["piriform"], levels.cortex * 0.8, 2.0)
    painter.fill(curves["palate"], levels.cortex * 0.95)
    painter.line([curves["nasal_floor"], curves["oral_palate"]], levels.cortex * 1.05, 2.0)
    painter.line(curves["maxilla_front"], levels.cortex * 1.05, 3.0)


def _add_mandible_and_teeth(painter: _Painter, curves: dict[str, Curve], levels: _Tissues) -> None:
    """The mandible, then the teeth of each jaw, each drawn on a layer of its own and added to the canvas: X-ray
    attenuation adds up, so a tooth over the jaw bone shows brighter than either."""
    layer = np.zeros_like(painter.canvas)
    mandible = curves["mandible"]
    painter.fill(mandible, 0.16, layer)
    painter.line(curves["mandible_mirror_border"], 0.10, 3.0, target=layer)
    painter.line(curves["mandible_border"], 0.38, 4.5, target=layer)
    painter.line(curves["mandible_lower"], 0.45, 6.0, target=layer)
    painter.line(mandible, 0.25, 2.5, closed=True, target=layer)
    painter.line(curves["symphysis_back"], 0.35, 4.0, target=layer)
    painter.canvas += layer
    tooth = levels.tooth
    for jaw in ("upper", "lower"):
        layer.fill(0.0)
        posterior = curves[f"{jaw}_posterior_teeth"]
        painter.fill([outline for outline, _ in posterior], tooth * 0.35, layer)
        painter.fill([crown for _, crown in posterior], tooth * 0.9, layer)
        outline, crown, pulp = curves[f"{jaw}_incisor"]
        painter.fill(outline, tooth * 0.75, layer)
        painter.fill(crown, tooth * 2.0, layer)
        painter.line(pulp, tooth * 0.45, 2.0, target=layer)
        painter.line(outline, tooth * 1.2, 1.5, closed=True, target=layer)
        painter.canvas += layer


def _finish(canvas: np.ndarray, pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, a smooth intensity field, contrast / brightness / gamma and noise: ``(H, W)`` float32 -> uint8."""
    h, w = canvas.shape
    scale = float(math.sqrt(abs(np.linalg.det(pose[:, :2]))))  # image pixels per reference pixel
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
    h, w = check_size(image_size)
    k = check_k(num_landmarks)
    rng = _rng(seed)
    # the order of the random draws is fixed: shape, pose, tissue levels, finishing
    points, sizes = varied_template(rng)
    curves = contours(points, sizes)
    landmarks, bound = landmarks_ref(points, curves, k)
    pose = _pose(rng, bound, (h, w))
    canvas = _draw(curves, sizes, pose, (h, w), rng)
    image = _finish(canvas, pose, rng)
    landmarks = landmarks @ pose[:, :2].T + pose[:, 2]
    return image, landmarks.astype(np.float64)
