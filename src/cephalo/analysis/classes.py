"""The ISBI 2015 challenge's second task: a class for each of eight measurements, by the challenge's thresholds
(Wang et al. 2016, as mirrored by public challenge scripts; shared/reference/cephalometric-measures.md).

Class 1 is the normal range; a value exactly on a threshold is class 1 (the scripts test ``<`` and ``>``).
``MW`` has a gap in the published classes: 2-4.5 mm is class 1, 0 mm class 2 (edge to edge), below 0 class 3
(crossbite), over 4.5 mm class 4 (large overjet), and 0-2 mm is in none. cephalo reads 0 <= MW < 2 mm as class 2:
an overjet under 2 mm is the edge-to-edge tendency, and real-valued coordinates are never exactly 0. (The public
scripts let 0-2 mm fall through to class 3, a crossbite, which contradicts the sign of MW.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Classes:
    """The challenge's classes of one of its measures: ``name`` is the challenge's (``FMA``), ``measure`` the column
    of cephalo's table it classifies (``SN_GoGn``); ``low`` / ``high``: the class-1 range; ``below`` / ``above``:
    the class of values outside it; ``names``: each class in words."""

    name: str
    measure: str
    low: float
    high: float
    below: int
    above: int
    names: dict[int, str]

    def classify(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` values -> ``(N,)`` int classes (0 where the value is NaN: unavailable)."""
        v = np.asarray(values, np.float64)
        out = np.where(v < self.low, self.below, np.where(v > self.high, self.above, 1))
        if self.name == "MW":  # 0 <= MW < 2: edge to edge (see the module docstring)
            out = np.where((v >= 0) & (v < self.low), 2, out)
        return np.where(np.isfinite(v), out, 0).astype(np.int64)

    def word(self, code: int) -> str | None:
        """Class ``code`` in words, as the challenge names it ("class II"); None for 0 (unavailable)."""
        return self.names.get(int(code)) if code else None


ISBI_CLASSES: dict[str, Classes] = {c.name: c for c in (
    Classes("ANB", "ANB", 3.2, 5.7, below=3, above=2, names={1: "class I", 2: "class II", 3: "class III"}),
    Classes("SNB", "SNB", 74.6, 78.7, below=2, above=3, names={1: "normal", 2: "retrognathic", 3: "prognathic"}),
    Classes("SNA", "SNA", 79.4, 83.2, below=3, above=2, names={1: "normal", 2: "prognathic", 3: "retrognathic"}),
    Classes("ODI", "ODI", 68.4, 80.5, below=3, above=2, names={1: "normal", 2: "deep bite", 3: "open bite"}),
    Classes("APDI", "APDI", 77.6, 85.2, below=2, above=3, names={1: "normal", 2: "class II", 3: "class III"}),
    Classes("FHI", "FHI", 0.65, 0.75, below=3, above=2, names={1: "normal", 2: "short face", 3: "long face"}),
    Classes("FMA", "SN_GoGn", 26.8, 31.4, below=3, above=2, names={1: "normal", 2: "high angle", 3: "low angle"}),
    Classes("MW", "IncisalTipDistance", 2.0, 4.5, below=3, above=4,
            names={1: "normal", 2: "edge to edge", 3: "anterior crossbite", 4: "large overjet"}),
)}
