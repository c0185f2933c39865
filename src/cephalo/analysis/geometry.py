"""Plane geometry of landmarks, in batch over images, in the anatomical frame.

Every measurement is computed after :func:`anatomical`: x points anterior (towards the face) and y points up, for
every image, whichever way the face looks in it. Signed angles are therefore signed by anatomy: an image of a face
looking left and the same face mirrored give the same values. Points are ``(N, 2)`` arrays (one per image),
angles are in degrees, every function returns ``(N,)``.
"""

from __future__ import annotations

import numpy as np


def facing(sella: np.ndarray, nasion: np.ndarray) -> np.ndarray:
    """``(N,)``: +1 where the face looks right in the image (nasion to the right of sella), else -1."""
    return np.where(nasion[:, 0] >= sella[:, 0], 1.0, -1.0)


def anatomical(points: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Image pixels ``(N, ..., 2)`` (x right, y down) -> the anatomical frame (x anterior, y up)."""
    out = np.asarray(points, np.float64).copy()
    shape = (-1,) + (1,) * (out.ndim - 2)
    out[..., 0] *= face.reshape(shape)
    out[..., 1] *= -1.0
    return out


def direction(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Direction of the vector ``start -> end``: degrees counter-clockwise from anterior (up is +90)."""
    d = end - start
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


def angle_between(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The unsigned angle between vectors ``v`` and ``w`` ``(N, 2)``, in [0, 180]."""
    cos = (v * w).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(w, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def vector_angle(a_start, a_end, b_start, b_end) -> np.ndarray:
    """Unsigned angle between the vectors ``a_start -> a_end`` and ``b_start -> b_end``."""
    return angle_between(a_end - a_start, b_end - b_start)


def angle_at(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The unsigned angle a-vertex-b at ``vertex``, in [0, 180]."""
    return angle_between(a - vertex, b - vertex)


def turn(a_start, a_end, b_start, b_end) -> np.ndarray:
    """Signed angle from the direction of line b to that of line a, in (-180, 180]: positive when a points more
    upward (counter-clockwise in the anatomical frame) than b."""
    d = direction(a_start, a_end) - direction(b_start, b_end)
    return (d + 180.0) % 360.0 - 180.0


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(b - a, axis=-1)


def anterior_of_line(point: np.ndarray, line_start: np.ndarray, line_end: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: ``point`` lies on the anterior side of the (roughly vertical, downward) line start -> end."""
    d, p = line_end - line_start, point - line_start
    return d[:, 0] * p[:, 1] - d[:, 1] * p[:, 0] > 0  # right of a downward line = anterior in this frame
