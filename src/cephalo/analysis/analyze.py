"""Every measurement of the table for a batch of images: ``analyze(landmarks, names, spacing_mm)``.

Landmarks are matched by name: the ISBI 2015 19 and the Aariz 29 use the names the measurements use (S, N, Or, Po,
A, B, Pog, Me, Gn, Go, Ar, PNS, ANS, UIT, LIT and, in Aariz, the incisor apices UIA, LIA); a dataset with other
names gives a ``mapping`` (its name -> the table's). A measurement whose landmarks are not all there, or that
needs mm where the image's spacing is unknown, is *unavailable*, with the reason, never a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cephalo.analysis.classes import ISBI_CLASSES
from cephalo.analysis.geometry import anatomical, facing
from cephalo.analysis.measures import MEASUREMENTS, Measurement, verdict


@dataclass
class Analysis:
    """``values[name]``: ``(N,)`` in the measurement's unit, NaN where unavailable for that image;
    ``unavailable[name]``: why, for measurements unavailable for every image; ``classes[name]``: ``(N,)`` ISBI
    classes (0: unavailable); ``missing_spacing``: ``(N,)`` bool, images whose mm values are unavailable."""

    measurements: tuple[Measurement, ...]
    values: dict[str, np.ndarray]
    unavailable: dict[str, str] = field(default_factory=dict)
    classes: dict[str, np.ndarray] = field(default_factory=dict)
    missing_spacing: np.ndarray | None = None

    def available(self) -> list[Measurement]:
        return [m for m in self.measurements if m.name not in self.unavailable]

    def columns(self) -> list[str]:
        """The keys of ``row``, in order."""
        return list(self.row(0)) if len(next(iter(self.values.values()), ())) else []

    def row(self, i: int) -> dict:
        """Image ``i`` by column, in table order (None where unavailable): each measurement's value, then each
        value against its clinical norm in words (``<name>_vs_norm``: "above norm (hyperdivergent)"), then for the
        ISBI 2015 measures the challenge's class as a code (``<name>_class``, as before) and in words
        (``<name>_isbi_class``). The two never mix: a norm verdict and an ISBI class may differ (different
        thresholds), and both are labelled."""
        out: dict = {}
        for m in self.measurements:
            value = self.values[m.name][i]
            out[m.name] = None if not np.isfinite(value) else float(value)
        for m in self.measurements:
            if m.within is not None:
                out[f"{m.name}_vs_norm"] = verdict(m, self.values[m.name][i])
        for name, classes in self.classes.items():
            out[f"{name}_class"] = int(classes[i]) or None
            out[f"{name}_isbi_class"] = ISBI_CLASSES[name].word(classes[i])
        return out


def parse_mapping(text: str) -> dict[str, str]:
    """``"Sella=S,Nasion=N"`` -> ``{"Sella": "S", "Nasion": "N"}``; ``ValueError`` naming a bad pair."""
    mapping = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"--landmark_map {text!r}: {pair!r} is not NAME=TABLE_NAME")
        mapping[source.strip()] = target.strip()
    return mapping


def analyze(landmarks: np.ndarray, names, spacing_mm, mapping: dict[str, str] | None = None) -> Analysis:
    """All measurements of ``landmarks (N, K, 2)`` (original pixels) named ``names``, ``spacing_mm (N,)`` mm per
    pixel (NaN or None: unknown)."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (len(names), 2):
        raise ValueError(f"landmarks must be (N, {len(names)}, 2) for {len(names)} names, got {landmarks.shape}")
    spacing = np.array([np.nan if s is None else float(s) for s in spacing_mm], np.float64)
    mapping = mapping or {}
    index = {mapping.get(n, n): k for k, n in enumerate(names)}
    face = facing(landmarks[:, index["S"]], landmarks[:, index["N"]]) if {"S", "N"} <= set(index) else \
        np.ones(len(landmarks))
    frame = anatomical(landmarks, face)
    points = {name: frame[:, k] for name, k in index.items()}
    result = Analysis(MEASUREMENTS, {}, missing_spacing=~np.isfinite(spacing))
    for m in MEASUREMENTS:
        absent = [n for n in m.landmarks if n not in points]
        if absent:
            result.values[m.name] = np.full(len(landmarks), np.nan)
            result.unavailable[m.name] = f"needs {', '.join(absent)}, which the landmark set lacks"
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            value = m.formula(points)
        result.values[m.name] = value * spacing if m.unit == "mm" else value
        if m.unit == "mm" and not np.isfinite(spacing).any():
            result.unavailable[m.name] = "in mm, and no image has a known pixel spacing"
    for name, rule in ISBI_CLASSES.items():  # 0 (unavailable) where the value is NaN
        result.classes[name] = rule.classify(result.values[rule.measure])
    return result
