"""The short skeletal summary of one image: signs that agree are combined, signs that disagree are said to.

Two readings, each from the measurements that speak to it (each against its own clinical norm, never against the
ISBI 2015 thresholds, so that the summary and the norm verdicts of the tables cannot contradict each other):

- **sagittal**: ANB (Steiner) and APDI (Kim); the Wits appraisal would be a third, but it needs the occlusal
  plane, which neither the ISBI 19 nor the Aariz 29 landmarks give.
- **vertical**: SN-MP (Steiner), FH-MP (Tweed) and the facial height index S-Go / N-Me.

A reading names a pattern only when every available sign gives it, or all but one do and that one lies within
its norm; otherwise it says that the signs disagree and lists them. It describes measurements, it is not a
diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cephalo.analysis.measures import BY_NAME

# measurement -> what a value below / within / above its norm says on that axis
SAGITTAL = {"ANB": ("skeletal class III", "skeletal class I", "skeletal class II"),
            "APDI": ("skeletal class II", "skeletal class I", "skeletal class III")}
VERTICAL = {"SN_MP": ("hypodivergent", "normodivergent", "hyperdivergent"),
            "FH_MP": ("hypodivergent", "normodivergent", "hyperdivergent"),
            "FHI": ("hyperdivergent", "normodivergent", "hypodivergent")}  # a small S-Go / N-Me: a long face


@dataclass(frozen=True)
class Sign:
    measure: str
    value: float
    says: str  # "skeletal class II", "normodivergent", ...
    within_norm: bool


@dataclass(frozen=True)
class Reading:
    axis: str  # "sagittal" or "vertical"
    pattern: str | None  # the combined reading, None where the signs disagree or none is available
    signs: tuple[Sign, ...]

    @property
    def text(self) -> str:
        """One line: ``"sagittal: skeletal class II (ANB 6.1°, APDI 74.3° agree)"``."""
        listed = ", ".join(f"{s.measure} {format_value(s.measure, s.value)}: {s.says}" for s in self.signs)
        if not self.signs:
            return f"{self.axis}: not available (its measurements need landmarks or a pixel spacing this image lacks)"
        if self.pattern is None:
            return f"{self.axis}: the signs disagree ({listed})"
        if len(self.signs) == 1:
            return f"{self.axis}: {self.pattern} (from {listed.split(':')[0]} alone)"
        agreeing = [s for s in self.signs if s.says == self.pattern]
        if len(agreeing) == len(self.signs):
            return f"{self.axis}: {self.pattern} (" + ", ".join(
                f"{s.measure} {format_value(s.measure, s.value)}" for s in self.signs) + " agree)"
        return f"{self.axis}: {self.pattern} (mostly: {listed})"


def format_value(measure: str, value: float) -> str:
    """A value as a page shows it: degrees and mm to 0.1, a ratio to 0.01, a share to 0.1 %."""
    unit = BY_NAME[measure].unit
    if unit == "ratio":
        return f"{value:.2f}"
    return f"{value:.1f}" + {"deg": "°", "mm": " mm", "%": " %"}.get(unit, "")


def _signs(values: dict[str, float], table: dict[str, tuple[str, str, str]]) -> tuple[Sign, ...]:
    signs = []
    for name, words in table.items():
        value = values.get(name)
        within = BY_NAME[name].within
        if value is None or not np.isfinite(value) or within is None:
            continue
        side = 0 if value < within[0] else 2 if value > within[1] else 1
        signs.append(Sign(name, float(value), words[side], side == 1))
    return tuple(signs)


def _combine(axis: str, signs: tuple[Sign, ...]) -> Reading:
    says = [s.says for s in signs]
    for pattern in dict.fromkeys(says):
        others = [s for s in signs if s.says != pattern]
        if not others or (len(others) == 1 and len(signs) >= 3 and others[0].within_norm):
            return Reading(axis, pattern, signs)
    return Reading(axis, None, signs)


def skeletal_summary(values: dict[str, float | None]) -> tuple[Reading, Reading]:
    """The sagittal and the vertical reading of one image's measurement values (``Analysis.row(i)``)."""
    clean = {k: v for k, v in values.items() if isinstance(v, float)}
    return _combine("sagittal", _signs(clean, SAGITTAL)), _combine("vertical", _signs(clean, VERTICAL))
