"""Geometry helpers of the synthetic cephalograms: smooth curves, ellipses, rotations, points along a polyline
and tooth outlines, all in plain (reference-pixel) coordinates. Points are ``(n, 2)`` arrays of ``(x, y)``."""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------------------------------------------
# Geometry helpers


def catmull_rom(points: np.ndarray, n: int = 8, closed: bool = False) -> np.ndarray:
    """A smooth curve through every point (uniform Catmull-Rom), ``n`` samples per segment.

    ``points`` ``(m, 2)`` -> ``(m * n, 2)`` when ``closed`` (the last segment returns to the first point), else
    ``((m - 1) * n + 1, 2)``; control point ``i`` is sample ``i * n``.
    """
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 2:
        return p.copy()
    # the segment from p1 to p2 needs a neighbour each side: wrap around, or mirror the end points
    if closed:
        ext = np.vstack([p[-1:], p, p[:2]])
    else:
        ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = np.linspace(0.0, 1.0, n, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (q[:, None, :] for q in (p0, p1, p2, p3))
    out = 0.5 * (
        2 * p1
        + (p2 - p0) * t
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
        + (3 * p1 - p0 - 3 * p2 + p3) * t**3
    )
    out = out.reshape(-1, 2)
    return out if closed else np.vstack([out, p[-1:]])


def ellipse(centre, ax: float, ay: float, t0: float = 0.0, t1: float = 360.0, n: int = 48) -> np.ndarray:
    """``(n, 2)`` points of an axis-aligned ellipse (half-axes ``ax``, ``ay``) from angle ``t0`` to ``t1`` degrees,
    both included; the image y axis points down, so growing angles run clockwise on screen."""
    t = np.radians(np.linspace(t0, t1, n))
    return np.stack([centre[0] + ax * np.cos(t), centre[1] + ay * np.sin(t)], axis=1)


def rotation(deg: float) -> np.ndarray:
    """The ``(2, 2)`` rotation matrix by ``deg`` degrees."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s], [s, c]])


def rotate_about(points: np.ndarray, centre: np.ndarray, deg: float, scale: float = 1.0) -> np.ndarray:
    """``points`` ``(n, 2)`` rotated by ``deg`` degrees and scaled by ``scale`` about ``centre`` ``(2,)``."""
    return (points - centre) @ (scale * rotation(deg)).T + centre


def point_at(polyline: np.ndarray, fraction: float) -> np.ndarray:
    """The point ``(2,)`` at ``fraction`` (0..1) of the arc length of a polyline ``(n, 2)``."""
    seg = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    target = fraction * cum[-1]
    i = int(np.clip(np.searchsorted(cum, target, side="right") - 1, 0, len(seg) - 1))
    r = 0.0 if seg[i] == 0 else (target - cum[i]) / seg[i]
    return polyline[i] + r * (polyline[i + 1] - polyline[i])


def tooth(apex: np.ndarray, tip: np.ndarray, width: float, n: int = 14) -> tuple[np.ndarray, ...]:
    """An incisor from its root apex ``(2,)`` to its tip ``(2,)``: its outline ``(2 n, 2)`` (apex and tip exactly
    on it), its crown outline and its pulp line."""
    axis = tip - apex
    d = axis / max(float(np.linalg.norm(axis)), 1e-9)
    normal = np.array([-d[1], d[0]])
    if normal[0] < 0:  # the labial side faces forwards (+x, the face looks right)
        normal = -normal
    s = np.linspace(0.0, 0.96, n)
    # half-widths along the tooth: a tapering root, the widest point at the crown, a blunt incisal edge
    labial = width * np.interp(s, [0, 0.15, 0.55, 0.72, 0.88, 0.96], [0.05, 0.28, 0.45, 0.55, 0.42, 0.2])
    lingual = width * np.interp(s, [0, 0.15, 0.55, 0.68, 0.86, 0.96], [0.05, 0.28, 0.42, 0.5, 0.3, 0.1])
    centre = apex + s[:, None] * axis
    lab = centre + labial[:, None] * normal
    lin = centre - lingual[:, None] * normal
    outline = np.vstack([apex[None], lab[1:], tip[None], lin[:0:-1]])
    crown = s >= 0.58
    crown_outline = np.vstack([lab[crown], tip[None], lin[crown][::-1]])
    pulp = centre[(s > 0.08) & (s < 0.7)]
    return outline, crown_outline, pulp


def posterior_tooth(x: float, y: float, width: float, crown_h: float, root_h: float, up: float):
    """A premolar / molar in the reference frame: its outline ``(15, 2)`` and its crown ``(10, 2)``, the crown on the
    occlusal line at ``y`` and the roots away from it (``up`` = 1 for upper teeth, -1 for lower teeth)."""
    w = width / 2
    c = crown_h * up
    r = root_h * up
    outline = np.asarray([
        (x - w * 0.9, y), (x - w * 0.45, y + 0.08 * c), (x, y - 0.02 * c), (x + w * 0.45, y + 0.08 * c),
        (x + w * 0.9, y), (x + w, y - 0.55 * c), (x + w * 0.8, y - c), (x + w * 0.6, y - c - 0.6 * r),
        (x + w * 0.35, y - c - r), (x + w * 0.1, y - c - 0.45 * r), (x - w * 0.1, y - c - 0.45 * r),
        (x - w * 0.35, y - c - r), (x - w * 0.6, y - c - 0.6 * r), (x - w * 0.8, y - c), (x - w, y - 0.55 * c),
    ], dtype=np.float64)  # fmt: skip
    crown = np.vstack([outline[:7], [(x, y - 1.05 * c)], outline[13:]])
    return outline, crown
