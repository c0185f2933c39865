"""The table of cephalometric measurements: one :class:`Measurement` per row, with the landmarks it needs, its
formula in the anatomical frame (:mod:`cephalo.analysis.geometry`: x anterior, y up), unit, norm and source.

Readings taken where a definition can be read more than one way (each also in the row's ``reading``):

- Angles between lines are taken between the directed segments named in the formula (for example FH as Po -> Or,
  the mandibular plane as Go -> Me), so each value is the angle the definition draws, not its supplement.
- ``ANB`` is ``SNA - SNB``: signed, negative when B lies ahead of A (the ISBI 2015 scripts compute it the same way).
- ``SN_GoGn`` is what the ISBI 2015 challenge calls ``FMA``: the angle between S-N and Go-Gn (what the public
  scripts that mirror the challenge compute, although Tweed's FMA is Frankfort to the mandibular plane). The
  challenge's class thresholds (26.8-31.4 degrees) are set for that reading. Tweed's angle is ``FH_MP``.
- ``IncisalTipDistance`` is what the challenge calls ``MW`` (modified Wits): the distance between the upper and the
  lower incisal tip, in mm, negative when the upper tip lies behind the lower one (as the challenge's scripts do: a
  distance, not its horizontal part). It is not the Wits appraisal (A and B projected onto the occlusal plane).
  Both were named after the challenge until 2026-12 (``RENAMED``); their ISBI classes keep the challenge's names.
- Björk's polygon is given as its three angles (saddle, articular, gonial), not their sum.
- ``A_NPerp`` and ``Pog_NPerp`` (McNamara) are signed distances from the nasion perpendicular to FH, positive
  ahead of it.
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
    unit: str  # "deg", "mm", "ratio" or "%"
    formula: Callable[[Points], np.ndarray]  # (N,) degrees, pixels (for mm) or a ratio
    reading: str
    norm_text: str
    source: str
    norm: tuple[float, float] | None = None  # (mean, SD) where the source gives them
    normal_range: tuple[float, float] | None = None  # where the source gives a range instead
    analysis: str = ""  # the analysis it belongs to on a report page: Steiner, Downs, Tweed, ...
    below: str = ""  # what a value under the norm reads as ("retrusive maxilla"); "" : only "below the norm"
    above: str = ""

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


def _n_perp(point: str) -> Callable[[Points], np.ndarray]:
    """Signed distance of ``point`` from the nasion perpendicular (the line through N perpendicular to FH),
    positive when the point lies ahead of it (McNamara)."""
    def formula(p: Points) -> np.ndarray:
        fh = p["Or"] - p["Po"]
        return ((p[point] - p["N"]) * fh).sum(-1) / np.linalg.norm(fh, axis=-1)
    return formula


def _m(name, title, landmarks, unit, formula, reading, norm, norm_text, source, analysis, below="",
       above="") -> Measurement:
    """``norm``: ``(mean, SD)``, ``("range", low, high)`` where the source gives a range, or None."""
    mean_sd, normal_range = (None, tuple(norm[1:])) if norm and norm[0] == "range" else (norm, None)
    return Measurement(name, title, tuple(landmarks.split()), unit, formula, reading, norm_text, source, mean_sd,
                       normal_range, analysis, below, above)


STEINER = "Steiner 1953 (as listed by WebCeph / alexcorvi-cephalometric)"
DOWNS = "Downs 1948 (as listed by WebCeph / alexcorvi-cephalometric)"
TWEED = "Tweed 1954 (as listed by WebCeph / alexcorvi-cephalometric)"
ISBI = "ISBI 2015 challenge class 1 range (Wang et al. 2016, as mirrored by public challenge scripts)"
BJORK = "Björk 1969 / Jarabak (as commonly cited)"
MCNAMARA = "McNamara 1984, adults (as commonly cited; the norms differ by age and sex)"
HEIGHTS = "facial heights (linear; they scale with the patient, so no norm is given)"

MEASUREMENTS: tuple[Measurement, ...] = (
    _m("SNA", "SNA", "S N A", "deg", _sna, "angle S-N-A at N", (82.0, 2.0), "82 ± 2°", STEINER, "Steiner",
       "retrusive maxilla", "protrusive maxilla"),
    _m("SNB", "SNB", "S N B", "deg", _snb, "angle S-N-B at N", (80.0, 2.0), "80 ± 2°", STEINER, "Steiner",
       "retrusive mandible", "protrusive mandible"),
    _m("ANB", "ANB", "S N A B", "deg", lambda p: _sna(p) - _snb(p), "SNA - SNB (negative: B ahead of A)",
       (2.0, 2.0), "2 ± 2°", STEINER, "Steiner", "class III tendency", "class II tendency"),
    _m("SN_MP", "SN to mandibular plane", "S N Go Me", "deg", lambda p: turn(p["S"], p["N"], p["Go"], p["Me"]),
       "S->N against Go->Me (positive: the mandibular plane falls anteriorly)", (32.0, 5.0), "32 ± 5°", STEINER,
       "Steiner", "hypodivergent", "hyperdivergent"),
    _m("U1_SN", "Upper incisor to SN", "S N UIT UIA", "deg",
       lambda p: vector_angle(p["N"], p["S"], p["UIA"], p["UIT"]),
       "angle between N->S and the upper incisor axis apex->tip", (103.0, 6.0), "103 ± 6°",
       "as listed by WebCeph / alexcorvi-cephalometric", "Steiner", "retroclined upper incisors",
       "proclined upper incisors"),
    _m("Interincisal", "Interincisal angle", "UIT UIA LIT LIA", "deg",
       lambda p: vector_angle(p["UIT"], p["UIA"], p["LIT"], p["LIA"]),
       "angle between the incisor axes, each tip->apex", (130.0, 5.0), "130 ± 5°", STEINER, "Steiner",
       "proclined incisors", "upright incisors"),
    _m("FacialAngle", "Facial angle (FH to N-Pog)", "Po Or N Pog", "deg", _facial_angle,
       "angle between Or->Po and N->Pog (over 90: the chin ahead of the N perpendicular)", (87.8, 3.6),
       "87.8 ± 3.6°", DOWNS, "Downs", "retrusive chin", "protrusive chin"),
    _m("Convexity", "Angle of convexity N-A-Pog", "N A Pog", "deg", _convexity,
       "180 - angle N-A-Pog, positive when A lies ahead of N-Pog (convex profile)", (0.0, 5.1), "0 ± 5.1°", DOWNS,
       "Downs", "concave skeletal profile", "convex skeletal profile"),
    _m("AB_NPog", "AB plane to N-Pog", "A B N Pog", "deg", _ab_npog,
       "A->B against N->Pog, positive when B lies ahead of A", (-4.6, 3.8), "-4.6 ± 3.8°", DOWNS, "Downs",
       "class II tendency", "class III tendency"),
    _m("YAxis", "Y-axis (S-Gn to FH)", "S Gn Po Or", "deg", lambda p: vector_angle(p["Po"], p["Or"], p["S"], p["Gn"]),
       "angle between Po->Or and S->Gn", (59.4, 3.8), "59.4 ± 3.8°", DOWNS, "Downs", "horizontal growth pattern",
       "vertical growth pattern"),
    _m("FH_MP", "FMA, Tweed (FH to mandibular plane)", "Po Or Go Me", "deg",
       lambda p: turn(p["Po"], p["Or"], p["Go"], p["Me"]), "Po->Or against Go->Me (positive: MP falls anteriorly)",
       ("range", 20.0, 30.0), "25° (20-30)", TWEED, "Tweed", "hypodivergent", "hyperdivergent"),
    _m("FMIA", "FMIA (FH to lower incisor)", "Po Or LIT LIA", "deg",
       lambda p: vector_angle(p["Or"], p["Po"], p["LIT"], p["LIA"]),
       "angle between Or->Po and the lower incisor axis tip->apex (Tweed's triangle with FH_MP and IMPA)",
       ("range", 62.0, 70.0), "66° (62-70)", TWEED, "Tweed", "proclined lower incisors",
       "retroclined lower incisors"),
    _m("IMPA", "IMPA (lower incisor to mandibular plane)", "Go Me LIT LIA", "deg",
       lambda p: vector_angle(p["Me"], p["Go"], p["LIA"], p["LIT"]),
       "angle between Me->Go and the lower incisor axis apex->tip (over 90: proclined)", ("range", 87.0, 93.0),
       "90° (87-93)", TWEED, "Tweed", "retroclined lower incisors", "proclined lower incisors"),
    _m("A_NPerp", "Point A to the nasion perpendicular", "Po Or N A", "mm", _n_perp("A"),
       "distance of A from the line through N perpendicular to FH, positive when A lies ahead",
       ("range", 0.0, 1.0), "0 to 1 mm", MCNAMARA, "McNamara", "retrusive maxilla", "protrusive maxilla"),
    _m("Pog_NPerp", "Pogonion to the nasion perpendicular", "Po Or N Pog", "mm", _n_perp("Pog"),
       "distance of Pog from the line through N perpendicular to FH, positive when Pog lies ahead",
       ("range", -4.0, 2.0), "-4 to +2 mm", MCNAMARA, "McNamara",
       "retrusive mandible", "protrusive mandible"),
    _m("SaddleAngle", "Saddle angle N-S-Ar", "N S Ar", "deg", lambda p: angle_at(p["N"], p["S"], p["Ar"]),
       "angle N-S-Ar at S", (123.0, 5.0), "123 ± 5°", BJORK, "Björk", "anterior condyle position",
       "posterior condyle position"),
    _m("ArticularAngle", "Articular angle S-Ar-Go", "S Ar Go", "deg", lambda p: angle_at(p["S"], p["Ar"], p["Go"]),
       "angle S-Ar-Go at Ar", (143.0, 6.0), "143 ± 6°", BJORK, "Björk", "", ""),
    _m("GonialAngle", "Gonial angle Ar-Go-Me", "Ar Go Me", "deg", lambda p: angle_at(p["Ar"], p["Go"], p["Me"]),
       "angle Ar-Go-Me at Go", (130.0, 7.0), "130 ± 7°", BJORK, "Björk", "horizontal growth pattern",
       "vertical growth pattern"),
    _m("N_Me", "Anterior face height N-Me", "N Me", "mm", lambda p: distance(p["N"], p["Me"]), "|N-Me|", None,
       "none", HEIGHTS, "Facial heights"),
    _m("S_Go", "Posterior face height S-Go", "S Go", "mm", lambda p: distance(p["S"], p["Go"]), "|S-Go|", None,
       "none", HEIGHTS, "Facial heights"),
    _m("ANS_Me", "Lower anterior face height ANS-Me", "ANS Me", "mm", lambda p: distance(p["ANS"], p["Me"]),
       "|ANS-Me|", None, "none", HEIGHTS, "Facial heights"),
    _m("LAFH_ratio", "Lower face height share ANS-Me / N-Me", "ANS Me N", "%",
       lambda p: 100.0 * distance(p["ANS"], p["Me"]) / distance(p["N"], p["Me"]),
       "|ANS-Me| / |N-Me| in % (Me as the lower end of both)", (55.0, 2.0), "55 ± 2 %",
       "as commonly cited", "Facial heights", "short lower face", "long lower face"),
    _m("FHI", "Facial height index S-Go / N-Me", "S Go N Me", "ratio",
       lambda p: distance(p["S"], p["Go"]) / distance(p["N"], p["Me"]), "|S-Go| / |N-Me| (posterior / anterior)",
       ("range", 0.65, 0.75), "0.65-0.75", ISBI, "Facial heights", "long face (hyperdivergent)",
       "short face (hypodivergent)"),
    _m("ODI", "Overbite depth indicator", "A B Go Me Po Or PNS ANS", "deg",
       lambda p: vector_angle(p["Me"], p["Go"], p["B"], p["A"]) + _fh_pp(p),
       "angle between Me->Go and B->A, plus FH to palatal plane (negative when PP tilts up anteriorly)",
       (74.5, 6.07), "74.5 ± 6.1°", "Kim 1974 (as commonly cited)", "Kim",
       "open bite tendency", "deep bite tendency"),
    _m("APDI", "Anteroposterior dysplasia indicator", "Po Or N Pog A B PNS ANS", "deg",
       lambda p: _facial_angle(p) + _ab_npog(p) + _fh_pp(p),
       "facial angle + AB to N-Pog (positive when B ahead of A) + FH to palatal plane", (81.4, 3.8),
       "81.4 ± 3.8°", "Kim and Vietas 1978 (as commonly cited)", "Kim",
       "class II tendency", "class III tendency"),
    _m("SN_GoGn", "S-N to Go-Gn (the ISBI 2015 challenge's 'FMA')", "S N Go Gn", "deg",
       lambda p: vector_angle(p["S"], p["N"], p["Go"], p["Gn"]),
       "angle between S->N and Go->Gn (what the challenge calls FMA; Tweed's FMA is FH_MP)",
       ("range", 26.8, 31.4), "26.8-31.4°", ISBI, "ISBI 2015", "low angle", "high angle"),
    _m("IncisalTipDistance", "Incisal-tip distance, signed (the ISBI 2015 challenge's 'modified Wits')", "UIT LIT",
       "mm", _mw, "distance from the lower to the upper incisal tip, negative when the upper tip lies behind "
       "(not the Wits appraisal, which projects A and B onto the occlusal plane)", ("range", 2.0, 4.5),
       "2-4.5 mm", ISBI, "ISBI 2015", "edge to edge or crossbite", "large overjet"),
)
BY_NAME = {m.name: m for m in MEASUREMENTS}
RENAMED = {"FMA": "SN_GoGn", "MW": "IncisalTipDistance"}  # columns before 2026-12 -> today's
REMOVED = {"Bjork": "SaddleAngle + ArticularAngle + GonialAngle (Björk's sum)"}


def verdict(measurement: Measurement, value: float) -> str | None:
    """A value against the measurement's clinical norm, in words: "within norm", "above norm (hyperdivergent)",
    "below norm"; None where the value is unavailable or there is no norm."""
    if value is None or not np.isfinite(value) or measurement.within is None:
        return None
    low, high = measurement.within
    if value < low:
        return "below norm" + (f" ({measurement.below})" if measurement.below else "")
    if value > high:
        return "above norm" + (f" ({measurement.above})" if measurement.above else "")
    return "within norm"


def deviation_sd(measurement: Measurement, value: float) -> float | None:
    """How far a value lies from the norm's mean, in SDs (None without a mean ± SD norm or a value)."""
    if value is None or not np.isfinite(value) or measurement.norm is None or not measurement.norm[1]:
        return None
    return (value - measurement.norm[0]) / measurement.norm[1]
