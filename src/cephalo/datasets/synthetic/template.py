"""The synthetic cephalogram's constants and template: the landmark names, the reference canvas and its pixel
spacing, the named anatomical control points in their resting position, the cervical vertebrae, and the checks of
``image_size`` / ``num_landmarks`` shared by the renderer and the writer."""

from __future__ import annotations

import numpy as np

SYNTHETIC_LANDMARKS: tuple[str, ...] = (
    "S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go",
    "LIT", "UIT", "UL", "LL", "Sn", "PogS", "PNS", "ANS", "Ar",
)  # fmt: skip
"""The 19 ISBI 2015 landmarks, in ISBI order."""

REFERENCE_SIZE: tuple[int, int] = (640, 512)
"""(height, width) of the canvas the template is drawn on; other sizes scale it."""

DEFAULT_SPACING_MM: float = 0.42
"""mm per pixel of a synthetic image at the reference size 640 x 512 (a 215 x 269 mm field of view); it makes the
mean S-N, N-Me, Ar-Go and Go-Me distances match adult norms (66, 127, 46 and 71 mm)."""

GENERATOR_VERSION = 1
"""Bumped whenever the drawing changes, so that cached datasets are regenerated."""

DEFAULT_SPLITS: dict[str, int] = {"train": 48, "valid": 16, "test": 16}

# Anatomical points beyond the 19 ISBI ones, each on a drawn contour; landmarks 20, 21, ... are named P20, P21, ...
EXTRA_LANDMARKS: tuple[tuple[str, str], ...] = (
    ("Pn", "pronasale, the tip of the nose"),
    ("N'", "soft-tissue nasion"),
    ("Co", "condylion, the top of the condyle"),
    ("Cor", "tip of the coronoid process"),
    ("Sto", "stomion, where the lips meet"),
    ("Me'", "soft-tissue menton"),
    ("Id", "infradentale, the lower alveolar crest"),
    ("Pr", "prosthion, the upper alveolar crest"),
    ("UIA", "upper incisor root apex"),
    ("LIA", "lower incisor root apex"),
    ("G", "glabella, the most prominent point of the frontal bone"),
    ("G'", "soft-tissue glabella"),
    ("Sm'", "soft-tissue labiomental fold"),
    ("Ba", "basion, the lower end of the clivus"),
)
EXTRA_LANDMARK_DESCRIPTIONS: dict[str, str] = {
    f"P{20 + i}": f"{abbr}: {text}" for i, (abbr, text) in enumerate(EXTRA_LANDMARKS)
}
"""What the named extra landmarks P20.. are; later ones are evenly spread points on drawn contours."""

# --------------------------------------------------------------------------------------------------------------
# The template: named control points in a normalised frame, u = x / 512, v = y / 640 of the reference canvas.
# Each entry: name -> (group, points). Groups move together under the shape variation.

_TEMPLATE: dict[str, tuple[str, list[tuple[float, float]]]] = {
    # ISBI landmarks
    "S": ("cranium", [(0.418, 0.421)]),
    "N": ("cranium", [(0.721, 0.396)]),
    "Or": ("cranium", [(0.656, 0.496)]),
    "Po": ("cranium", [(0.310, 0.483)]),
    "A": ("maxilla", [(0.708, 0.626)]),
    "B": ("mandible", [(0.684, 0.779)]),
    "Pog": ("mandible", [(0.692, 0.828)]),
    "Me": ("mandible", [(0.652, 0.860)]),
    "Gn": ("mandible", [(0.680, 0.851)]),
    "Go": ("mandible", [(0.370, 0.728)]),
    "LIT": ("lower_incisor", [(0.723, 0.699)]),
    "UIT": ("upper_incisor", [(0.733, 0.709)]),
    "UL": ("soft_upper", [(0.806, 0.683)]),
    "LL": ("soft_lower", [(0.797, 0.758)]),
    "Sn": ("soft_upper", [(0.788, 0.637)]),
    "PogS": ("soft_lower", [(0.770, 0.846)]),
    "PNS": ("maxilla", [(0.455, 0.608)]),
    "ANS": ("maxilla", [(0.728, 0.603)]),
    "Ar": ("mandible", [(0.351, 0.558)]),
    # named extras
    "Pn": ("nose", [(0.872, 0.545)]),
    "N'": ("soft_cranial", [(0.752, 0.398)]),
    "Co": ("mandible", [(0.364, 0.506)]),
    "Cor": ("mandible", [(0.462, 0.566)]),
    "Sto": ("soft_upper", [(0.783, 0.719)]),
    "Me'": ("soft_lower", [(0.705, 0.904)]),
    "Id": ("mandible", [(0.705, 0.735)]),
    "Pr": ("maxilla", [(0.722, 0.668)]),
    "UIA": ("upper_incisor", [(0.695, 0.615)]),
    "LIA": ("lower_incisor", [(0.665, 0.782)]),
    "G": ("cranium", [(0.748, 0.362)]),
    "G'": ("soft_cranial", [(0.775, 0.352)]),
    "Sm'": ("soft_lower", [(0.756, 0.806)]),
    "Ba": ("cranium", [(0.318, 0.588)]),
    # contours (control points; the curves pass through them)
    "vault_centre": ("cranium", [(0.400, 0.370)]),
    "frontal_low": ("cranium", [(0.742, 0.320)]),
    "frontal_sinus": ("cranium", [(0.714, 0.356)]),
    "occipital": ("cranium", [(0.150, 0.572), (0.205, 0.585)]),
    "ant_base": ("cranium", [(0.500, 0.406), (0.580, 0.401), (0.650, 0.396), (0.705, 0.390)]),
    "orbital_roof": ("cranium", [(0.520, 0.402), (0.600, 0.378), (0.670, 0.372), (0.712, 0.386)]),
    "clivus_endo": ("cranium", [(0.372, 0.488), (0.342, 0.548)]),
    "clivus_exo": ("cranium", [(0.428, 0.452), (0.392, 0.508)]),
    "petrous": ("cranium", [(0.235, 0.445), (0.330, 0.428), (0.392, 0.450), (0.372, 0.505),
                            (0.340, 0.545), (0.285, 0.556), (0.238, 0.515)]),
    "nasal_bone": ("cranium", [(0.738, 0.425), (0.762, 0.463)]),
    "piriform": ("maxilla", [(0.738, 0.485), (0.716, 0.535), (0.718, 0.580)]),
    "nasal_floor": ("maxilla", [(0.540, 0.600), (0.680, 0.597)]),
    "oral_palate": ("maxilla", [(0.690, 0.648), (0.640, 0.632), (0.560, 0.627), (0.495, 0.620)]),
    "upper_alveolus": ("maxilla", [(0.690, 0.674), (0.620, 0.672), (0.540, 0.666), (0.492, 0.646)]),
    "pterygoid": ("maxilla", [(0.445, 0.560), (0.452, 0.480), (0.470, 0.422), (0.560, 0.404)]),
    "sinus": ("maxilla", [(0.520, 0.505), (0.640, 0.492), (0.700, 0.525), (0.702, 0.585), (0.560, 0.590),
                          (0.505, 0.565)]),
    "ptm": ("maxilla", [(0.478, 0.498), (0.466, 0.522), (0.470, 0.562), (0.466, 0.597), (0.480, 0.560),
                        (0.490, 0.522)]),
    "key_ridge": ("maxilla", [(0.608, 0.505), (0.596, 0.545), (0.600, 0.595)]),
    "mandible_post": ("mandible", [(0.346, 0.520), (0.353, 0.600), (0.356, 0.660), (0.359, 0.700)]),
    "mandible_low": ("mandible", [(0.400, 0.752), (0.470, 0.781), (0.550, 0.812), (0.610, 0.842)]),
    "symphysis_front": ("mandible", [(0.693, 0.804), (0.692, 0.757)]),
    "mandible_alveolus": ("mandible", [(0.672, 0.742), (0.620, 0.733), (0.550, 0.726), (0.498, 0.712)]),
    "ramus_front": ("mandible", [(0.478, 0.672), (0.470, 0.620)]),
    "sigmoid": ("mandible", [(0.430, 0.590), (0.398, 0.556), (0.386, 0.522)]),
    "symphysis_back": ("mandible", [(0.672, 0.745), (0.648, 0.778), (0.628, 0.815), (0.632, 0.848)]),
    "lower_teeth": ("mandible", [(0.668, 0.701), (0.634, 0.697), (0.590, 0.693), (0.540, 0.689), (0.494, 0.683)]),
    "upper_teeth": ("maxilla", [(0.683, 0.695), (0.650, 0.692), (0.606, 0.688), (0.556, 0.684), (0.508, 0.678)]),
    "hyoid": ("neck", [(0.470, 0.918), (0.500, 0.912), (0.528, 0.916), (0.522, 0.928), (0.478, 0.930)]),
    "soft_forehead": ("soft_cranial", [(0.762, 0.290)]),
    "soft_nose": ("nose", [(0.772, 0.440), (0.805, 0.478), (0.842, 0.512), (0.870, 0.575), (0.848, 0.603),
                           (0.812, 0.618)]),
    "soft_lip_up": ("soft_upper", [(0.798, 0.658), (0.800, 0.706)]),
    "soft_lip_low": ("soft_lower", [(0.793, 0.733), (0.786, 0.784)]),
    "soft_chin": ("soft_lower", [(0.761, 0.827), (0.757, 0.878), (0.640, 0.906)]),
    "neck_front": ("neck", [(0.575, 0.916), (0.530, 0.940), (0.520, 1.000), (0.515, 1.300)]),
    "neck_back": ("neck", [(0.140, 1.300), (0.140, 0.850), (0.128, 0.700)]),
    "airway_front": ("neck", [(0.430, 0.612), (0.395, 0.645), (0.372, 0.720), (0.362, 0.820), (0.350, 0.920),
                              (0.345, 1.300)]),
    "airway_back": ("spine", [(0.300, 1.300), (0.304, 0.900), (0.310, 0.800), (0.312, 0.700), (0.318, 0.630),
                              (0.350, 0.606), (0.400, 0.598)]),
    "spine": ("spine", [(0.0, 0.0)]),  # anchor of the vertebrae (drawn relative to it)
}


def _build_template() -> tuple[np.ndarray, dict[str, slice], dict[str, np.ndarray]]:
    chunks, index, groups, start = [], {}, {}, 0
    for name, (group, pts) in _TEMPLATE.items():
        arr = np.asarray(pts, dtype=np.float64) * (REFERENCE_SIZE[1], REFERENCE_SIZE[0])
        chunks.append(arr)
        index[name] = slice(start, start + len(arr))
        groups.setdefault(group, []).extend(range(start, start + len(arr)))
        start += len(arr)
    return np.concatenate(chunks), index, {g: np.asarray(ix) for g, ix in groups.items()}


BASE, IX, GROUPS = _build_template()
"""``BASE`` ``(P, 2)``: every template point at rest, in reference pixels; ``IX`` maps a template name to its rows
of ``BASE`` (a slice); ``GROUPS`` maps a group name to the row indices of its points."""

U, V = REFERENCE_SIZE[1], REFERENCE_SIZE[0]
"""Width and height of the reference canvas (512, 640): the units of the normalised template frame."""


def _np(pts):
    return np.asarray(pts, dtype=np.float64) * (U, V)


# Vertebrae, in reference pixels relative to the spine anchor at (0, 0): outline polygons of C2..C5 bodies (C2 with
# the dens), their posterior arches, and the anterior / posterior arch of the atlas (C1).
VERTEBRA_BODIES = [
    _np([(0.262, 0.578), (0.282, 0.598), (0.288, 0.640), (0.296, 0.700), (0.292, 0.722), (0.250, 0.728),
         (0.214, 0.726), (0.212, 0.690), (0.222, 0.640), (0.244, 0.612), (0.246, 0.590)]),
    _np([(0.290, 0.748), (0.294, 0.812), (0.252, 0.818), (0.214, 0.814), (0.214, 0.752), (0.252, 0.746)]),
    _np([(0.288, 0.838), (0.290, 0.902), (0.250, 0.908), (0.210, 0.904), (0.210, 0.842), (0.250, 0.836)]),
    _np([(0.284, 0.928), (0.286, 0.992), (0.246, 0.998), (0.206, 0.994), (0.206, 0.932), (0.246, 0.926)]),
]
VERTEBRA_ARCHES = [
    _np([(0.212, 0.650), (0.120, 0.655), (0.095, 0.690), (0.130, 0.705), (0.212, 0.705)]),
    _np([(0.214, 0.765), (0.130, 0.770), (0.110, 0.795), (0.135, 0.805), (0.214, 0.800)]),
    _np([(0.210, 0.855), (0.135, 0.860), (0.115, 0.885), (0.140, 0.895), (0.210, 0.890)]),
    _np([(0.206, 0.945), (0.140, 0.950), (0.120, 0.975), (0.145, 0.985), (0.206, 0.980)]),
]
ATLAS = [_np([(0.300, 0.592)]), _np([(0.140, 0.598)])]  # centres of the anterior and posterior arch

# --------------------------------------------------------------------------------------------------------------
# Public helpers


def landmark_names(num_landmarks: int) -> tuple[str, ...]:
    """The names of the first ``num_landmarks`` synthetic landmarks: the 19 ISBI names, then ``P20``, ``P21``, ..."""
    k = check_k(num_landmarks)
    return SYNTHETIC_LANDMARKS[:k] + tuple(f"P{i}" for i in range(20, k + 1))


def spacing_for_size(
    image_size: tuple[int, int] = REFERENCE_SIZE, reference_spacing_mm: float = DEFAULT_SPACING_MM
) -> float:
    """mm per pixel of a synthetic image of ``image_size`` (height, width), given the spacing at 640 x 512."""
    h, w = check_size(image_size)
    return float(reference_spacing_mm) / min(h / REFERENCE_SIZE[0], w / REFERENCE_SIZE[1])


def check_k(num_landmarks) -> int:
    """``num_landmarks`` as an int; ``ValueError`` unless it is a positive integer (``True`` is not)."""
    if isinstance(num_landmarks, bool) or int(num_landmarks) != num_landmarks or int(num_landmarks) < 1:
        raise ValueError(f"num_landmarks must be a positive integer, got {num_landmarks!r}")
    return int(num_landmarks)


def check_size(image_size) -> tuple[int, int]:
    """``image_size`` as ``(height, width)`` ints; ``ValueError`` unless it is two integers >= 8."""
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if h < 8 or w < 8 or (h, w) != tuple(image_size):
        raise ValueError(f"image_size must be two integers >= 8 (height, width), got {image_size!r}")
    return h, w
