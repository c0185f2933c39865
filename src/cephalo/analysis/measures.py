"""The table of cephalometric measurements: one :class:`Measurement` per row, with the landmarks it needs, its
formula in the anatomical frame (:mod:`cephalo.analysis.geometry`: x anterior, y up), unit, norm and source.

Readings taken where a definition can be read more than one way (each also in the row's ``reading``):

- Angles between lines are taken between the directed segments named in the formula (for example FH as Po -> Or,
  the mandibular plane as Go -> Me), so each value is the angle the definition draws, not its supplement.
- ``ANB`` is ``SNA - SNB``: signed, negative when B lies ahead of A (the ISBI 2015 scripts compute it the same way).
- ``FMA`` is the ISBI 2015 challenge's measure of that name: the angle between S-N and Go-Gn (what the public
  scripts that mirror the challenge compute, although Tweed's FMA is Frankfort to the mandibular plane). The
  challenge's class thresholds (26.8-31.4 degrees) are set for that reading. Tweed's angle is ``FH_MP``.
- ``MW`` (ISBI's modified Wits) is the distance between the upper and the lower incisal tip, in mm, negative when
  the upper tip lies behind the lower one (as the challenge's scripts do: a distance, not its horizontal part).
- ``ODI`` (Kim 1974) = the AB-plane to mandibular-plane angle + FH to palatal plane; ``APDI`` (Kim and Vietas
  1978) = facial angle + AB plane to N-Pog + FH to palatal plane. FH to palatal plane is negative when the palatal
  plane tilts up anteriorly, AB to N-Pog positive when B lies ahead of A: the published sign conventions, also
  those of the challenge's scripts.

Norms are as found second-hand (shared/reference/cephalometric-measures.md: WebCeph, alexcorvi/cephalometric) and
in the original papers' abstracts where reachable; ``source`` says which. They describe adult white samples of
the 1940s-70s and are a reference, not a diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cephalo.analysis.geometry import angle_at, anterior_of_line, distance, turn, vector_angle

Points = dict  # canonical landmark name -> (N, 2) anatomical-frame pixels


@dataclass(frozen=True)
class Measurement:
    name: str  # the column name in measurements.csv
    title: str
    landmarks: tuple[str, ...]
    unit: str  # "deg", "mm" or "ratio"
    formula: Callable[[Points], np.ndarray]  # (N,) degrees, pixels (for mm) or a ratio
    reading: str
    norm_text: str
    source: str
    norm: tuple[float, float] | None = None  # (mean, SD) where the source gives them
    normal_range: tuple[float, float] | None = None  # where the source gives a range instead

    @property
    def within(self) -> tuple[float, float] | None:
        """The range counted as normal: the source's range, else mean ± 1 SD."""
        if self.normal_range is not None:
            return self.normal_range
        return None if self.norm is None else (self.norm[0] - self.norm[1], self.norm[0] + self.norm[1])


def _sna(p: Points) -> np.ndarray:
    return angle_at(p["S"], p["N"], p["A"])


def _snb(p: Points) -> np.ndarray:
    return angle_at(p["S"], p["N"], p["B"])


def _fh_pp(p: Points) -> np.ndarray:
    """FH to the palatal plane, negative when PNS -> ANS tilts up anteriorly relative to Po -> Or."""
    return turn(p["Po"], p["Or"], p["PNS"], p["ANS"])


def _ab_npog(p: Points) -> np.ndarray:
    """The AB plane to the facial plane N-Pog, positive when B lies ahead of A."""
    return turn(p["A"], p["B"], p["N"], p["Pog"])


def _facial_angle(p: Points) -> np.ndarray:
    return vector_angle(p["Or"], p["Po"], p["N"], p["Pog"])


def _convexity(p: Points) -> np.ndarray:
    bend = 180.0 - angle_at(p["N"], p["A"], p["Pog"])
    return np.where(anterior_of_line(p["A"], p["N"], p["Pog"]), bend, -bend)


def _mw(p: Points) -> np.ndarray:
    gap = distance(p["LIT"], p["UIT"])
    return np.where(p["UIT"][:, 0] >= p["LIT"][:, 0], gap, -gap)


def _m(name, title, landmarks, unit, formula, reading, norm, norm_text, source) -> Measurement:
    """``norm``: ``(mean, SD)``, or ``("range", low, high)`` where the source gives a range."""
    mean_sd, normal_range = (None, tuple(norm[1:])) if norm and norm[0] == "range" else (norm, None)
    return Measurement(name, title, tuple(landmarks.split()), unit, formula, reading, norm_text, source, mean_sd,
                       normal_range)


STEINER = "Steiner 1953 (as listed by WebCeph / alexcorvi-cephalometric)"
DOWNS = "Downs 1948 (as listed by WebCeph / alexcorvi-cephalometric)"
TWEED = "Tweed 1954 (as listed by WebCeph / alexcorvi-cephalometric)"
ISBI = "ISBI 2015 challenge class 1 range (Wang et al. 2016, as mirrored by public challenge scripts)"

MEASUREMENTS: tuple[Measurement, ...] = (
    _m("SNA", "SNA", "S N A", "deg", _sna, "angle S-N-A at N", (82.0, 2.0), "82 ± 2°", STEINER),
    _m("SNB", "SNB", "S N B", "deg", _snb, "angle S-N-B at N", (80.0, 2.0), "80 ± 2°", STEINER),
    _m("ANB", "ANB", "S N A B", "deg", lambda p: _sna(p) - _snb(p), "SNA - SNB (negative: B ahead of A)",
       (2.0, 2.0), "2 ± 2°", STEINER),
    _m("SN_MP", "SN to mandibular plane", "S N Go Me", "deg", lambda p: turn(p["S"], p["N"], p["Go"], p["Me"]),
       "S->N against Go->Me (positive: the mandibular plane falls anteriorly)", (32.0, 5.0), "32 ± 5°", STEINER),
    _m("FacialAngle", "Facial angle (FH to N-Pog)", "Po Or N Pog", "deg", _facial_angle,
       "angle between Or->Po and N->Pog (over 90: the chin ahead of the N perpendicular)", (87.8, 3.6),
       "87.8 ± 3.6°", DOWNS),
    _m("Convexity", "Angle of convexity N-A-Pog", "N A Pog", "deg", _convexity,
       "180 - angle N-A-Pog, positive when A lies ahead of N-Pog (convex profile)", (0.0, 5.1), "0 ± 5.1°", DOWNS),
    _m("AB_NPog", "AB plane to N-Pog", "A B N Pog", "deg", _ab_npog,
       "A->B against N->Pog, positive when B lies ahead of A", (-4.6, 3.8), "-4.6 ± 3.8°", DOWNS),
    _m("YAxis", "Y-axis (S-Gn to FH)", "S Gn Po Or", "deg", lambda p: vector_angle(p["Po"], p["Or"], p["S"], p["Gn"]),
       "angle between Po->Or and S->Gn", (59.4, 3.8), "59.4 ± 3.8°", DOWNS),
    _m("FH_MP", "Tweed FMA (FH to mandibular plane)", "Po Or Go Me", "deg",
       lambda p: turn(p["Po"], p["Or"], p["Go"], p["Me"]), "Po->Or against Go->Me (positive: MP falls anteriorly)",
       ("range", 20.0, 30.0), "25° (20-30)", TWEED),
    _m("FMIA", "FMIA (FH to lower incisor)", "Po Or LIT LIA", "deg",
       lambda p: vector_angle(p["Or"], p["Po"], p["LIT"], p["LIA"]),
       "angle between Or->Po and the lower incisor axis tip->apex (Tweed's triangle with FH_MP and IMPA)",
       ("range", 62.0, 70.0), "66° (62-70)", TWEED),
    _m("IMPA", "IMPA (lower incisor to mandibular plane)", "Go Me LIT LIA", "deg",
       lambda p: vector_angle(p["Me"], p["Go"], p["LIA"], p["LIT"]),
       "angle between Me->Go and the lower incisor axis apex->tip (over 90: proclined)", ("range", 87.0, 93.0),
       "90° (87-93)", TWEED),
    _m("U1_SN", "Upper incisor to SN", "S N UIT UIA", "deg",
       lambda p: vector_angle(p["N"], p["S"], p["UIA"], p["UIT"]),
       "angle between N->S and the upper incisor axis apex->tip", (103.0, 6.0), "103 ± 6°",
       "as listed by WebCeph / alexcorvi-cephalometric"),
    _m("Interincisal", "Interincisal angle", "UIT UIA LIT LIA", "deg",
       lambda p: vector_angle(p["UIT"], p["UIA"], p["LIT"], p["LIA"]),
       "angle between the incisor axes, each tip->apex", (130.0, 5.0), "130 ± 5°", STEINER),
    _m("Bjork", "Björk sum", "N S Ar Go Me", "deg",
       lambda p: angle_at(p["N"], p["S"], p["Ar"]) + angle_at(p["S"], p["Ar"], p["Go"])
       + angle_at(p["Ar"], p["Go"], p["Me"]), "N-S-Ar + S-Ar-Go + Ar-Go-Me", (396.0, 6.0), "396 ± 6°",
       "Björk 1969 (as listed by WebCeph / alexcorvi-cephalometric)"),
    _m("FHI", "Facial height index S-Go / N-Me", "S Go N Me", "ratio",
       lambda p: distance(p["S"], p["Go"]) / distance(p["N"], p["Me"]), "|S-Go| / |N-Me| (posterior / anterior)",
       ("range", 0.65, 0.75), "0.65-0.75", ISBI),
    _m("ODI", "Overbite depth indicator", "A B Go Me Po Or PNS ANS", "deg",
       lambda p: vector_angle(p["Me"], p["Go"], p["B"], p["A"]) + _fh_pp(p),
       "angle between Me->Go and B->A, plus FH to palatal plane (negative when PP tilts up anteriorly)",
       (74.5, 6.07), "74.5 ± 6.1° (ISBI class 1: 68.4-80.5)", "Kim 1974 (as commonly cited)"),
    _m("APDI", "Anteroposterior dysplasia indicator", "Po Or N Pog A B PNS ANS", "deg",
       lambda p: _facial_angle(p) + _ab_npog(p) + _fh_pp(p),
       "facial angle + AB to N-Pog (positive when B ahead of A) + FH to palatal plane", (81.4, 3.8),
       "81.4 ± 3.8° (ISBI class 1: 77.6-85.2)", "Kim and Vietas 1978 (as commonly cited)"),
    _m("FMA", "FMA, as the ISBI 2015 challenge reads it (S-N to Go-Gn)", "S N Go Gn", "deg",
       lambda p: vector_angle(p["S"], p["N"], p["Go"], p["Gn"]), "angle between S->N and Go->Gn (challenge reading)",
       ("range", 26.8, 31.4), "26.8-31.4°", ISBI),
    _m("MW", "Modified Wits (incisal tips)", "UIT LIT", "mm", _mw,
       "distance from the lower to the upper incisal tip, negative when the upper tip lies behind",
       ("range", 2.0, 4.5), "2-4.5 mm", ISBI),
)
BY_NAME = {m.name: m for m in MEASUREMENTS}
