"""Where things are in a synthetic cephalogram: the template varied per image (face height, jaw positions, incisor
inclination, soft tissue, ...), every drawn contour built through the varied points, and the choice of landmarks
(the named points, then points spread over the contours).

All coordinates are reference pixels (the 640 x 512 canvas, ``(x, y)``, y down). In this module only
:func:`varied_template` draws random numbers, and the renderer draws the pose, tissue levels and finishing after
it: the same seed must keep giving the same image, so the order of the draws is part of the output (a change to
it, or to any drawing, bumps ``GENERATOR_VERSION``).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from .shapes import catmull_rom, ellipse, point_at, posterior_tooth, rotate_about, tooth
from .template import (
    ATLAS,
    BASE,
    EXTRA_LANDMARKS,
    GROUPS,
    IX,
    SYNTHETIC_LANDMARKS,
    VERTEBRA_ARCHES,
    VERTEBRA_BODIES,
    U,
    V,
)

Curve = Union[np.ndarray, tuple[np.ndarray, ...]]
"""A polyline / polygon ``(n, 2)``, or a tuple of them (an incisor: outline, crown, pulp; the vertebrae), or of
such tuples (the posterior teeth of a jaw, each ``(outline, crown)``)."""

# --------------------------------------------------------------------------------------------------------------
# Shape: the template, varied per image


_NAMED_EXTRA = tuple(abbr for abbr, _ in EXTRA_LANDMARKS)
_ALL_NAMED = SYNTHETIC_LANDMARKS + _NAMED_EXTRA


def varied_template(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """The template points after this image's anatomical variation, and the size parameters of the structures.

    Returns ``points`` ``(P, 2)`` (rows as in ``template.BASE``, found by name through ``template.IX``) and
    ``sizes``: half-axes, radii and thicknesses in reference pixels, the neck tilt in degrees, the offset of the far
    half of the mandible in reference pixels.
    """
    points = BASE.copy()
    points += rng.normal(0.0, 1.2, points.shape)  # per-point jitter, ~0.45 mm
    _stretch_face_height(points, rng.uniform(0.93, 1.07))
    # maxillary position (with the upper incisor, upper lip and nose)
    _shift_groups(points, ("maxilla", "upper_incisor", "soft_upper", "nose"), rng.uniform(-0.012, 0.012) * U)
    _scale_nose(points, rng.uniform(0.85, 1.15))
    _turn_groups(points, ("upper_incisor",), "UIA", rng.uniform(-6.0, 6.0))  # incisor inclination about its apex
    # mandible: length and rotation about the condyle, carrying the lower incisor and soft-tissue chin
    mandible_length, mandible_rotation = rng.uniform(0.92, 1.08), rng.uniform(-2.5, 2.5)
    _turn_groups(points, ("mandible", "lower_incisor", "soft_lower"), "Co", mandible_rotation, mandible_length)
    _turn_groups(points, ("lower_incisor",), "LIA", rng.uniform(-6.0, 6.0))
    # soft-tissue thickness
    _shift_groups(points, ("soft_upper",), rng.uniform(-0.01, 0.01) * U)
    _shift_groups(points, ("soft_lower",), rng.uniform(-0.01, 0.01) * U)
    _shift_groups(points, ("soft_cranial",), rng.uniform(-0.006, 0.006) * U)
    _shift_groups(points, ("spine",), rng.uniform(-0.015, 0.015) * U)  # neck posture
    return points, _structure_sizes(rng)


def _stretch_face_height(points: np.ndarray, factor: float) -> None:
    """Stretch everything below the cranial base vertically by ``factor``, in place; the stretch fades in over a
    band below the cranial base, so the skull above it does not move."""
    top = 0.42 * V
    weight = np.clip((points[:, 1] - top) / (0.1 * V), 0.0, 1.0)
    points[:, 1] += weight * (points[:, 1] - top) * (factor - 1.0)


def _shift_groups(points: np.ndarray, groups: tuple[str, ...], dx: float) -> None:
    """Move the points of ``groups`` forwards by ``dx`` reference pixels, in place."""
    for group in groups:
        points[GROUPS[group], 0] += dx


def _scale_nose(points: np.ndarray, factor: float) -> None:
    """Scale the nose about subnasale, in place: its length by ``factor``, its height by half as much."""
    subnasale = points[IX["Sn"]][0].copy()
    nose = GROUPS["nose"]
    points[nose] = subnasale + (points[nose] - subnasale) * (factor, 0.5 + 0.5 * factor)


def _turn_groups(points: np.ndarray, groups: tuple[str, ...], pivot: str, degrees: float, scale: float = 1.0) -> None:
    """Rotate (and scale) the points of ``groups`` about the template point ``pivot``, in place."""
    centre = points[IX[pivot]][0].copy()  # taken once: the pivot itself may belong to one of the groups
    for group in groups:
        points[GROUPS[group]] = rotate_about(points[GROUPS[group]], centre, degrees, scale)


def _structure_sizes(rng: np.random.Generator) -> dict[str, float]:
    """The sizes of the structures that are not drawn through template points (the draws in this order)."""
    return {
        "vault_ax": 0.345 * U * rng.uniform(0.96, 1.04),  # half-axes of the cranial vault
        "vault_ay": 0.310 * V * rng.uniform(0.96, 1.04),
        "vault_th": rng.uniform(10.0, 14.0),  # thickness of the vault bone
        "sella_r": 11.0 * rng.uniform(0.8, 1.2),
        "orbit_ax": 0.040 * U * rng.uniform(0.9, 1.1),
        "orbit_ay": 0.044 * V * rng.uniform(0.9, 1.1),
        "meatus_r": 8.0 * rng.uniform(0.85, 1.15),
        "spine_tilt": rng.uniform(-4.0, 4.0),
        "mirror_dx": rng.uniform(-8.0, 4.0),  # the far half of the mandible, seen slightly offset
        "mirror_dy": rng.uniform(0.0, 8.0),
    }


# --------------------------------------------------------------------------------------------------------------
# Contours: every drawn curve, built through the varied template points


class _NamedPoints:
    """The varied template points by name: ``points["ant_base"]`` -> ``(n, 2)``, ``points.point("S")`` -> ``(2,)``."""

    def __init__(self, points: np.ndarray):
        self.array = points

    def __getitem__(self, name: str) -> np.ndarray:
        return self.array[IX[name]]

    def point(self, name: str) -> np.ndarray:
        return self.array[IX[name]][0]


def contours(points: np.ndarray, sizes: dict[str, float]) -> dict[str, Curve]:
    """Every drawn curve and polygon, by name, built through the varied template ``points`` ``(P, 2)`` with the
    ``sizes`` of :func:`varied_template`."""
    named = _NamedPoints(points)
    curves: dict[str, Curve] = {}
    curves.update(_cranial_vault(named, sizes))
    curves.update(_cranial_base(named, sizes, curves["vault_inner"]))
    curves.update(_sella_turcica(named, sizes))
    curves.update(_orbit_and_meatus(named, sizes))
    curves.update(_nasal_bone_and_maxilla(named))
    curves.update(_palate(named, curves["maxilla_front"]))
    curves.update(_mandible(named, sizes))
    curves.update(_teeth(named))
    curves.update(_soft_tissue(named, sizes))
    curves.update(_airway_and_hyoid(named))
    curves.update(_cervical_spine(named, sizes))
    return curves


def _cranial_vault(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The skull cap: outer and inner table, the bone band between them, the diploe, the frontal sinus."""
    centre = points.point("vault_centre")
    half_x, half_y, thickness = sizes["vault_ax"], sizes["vault_ay"], sizes["vault_th"]
    # from the occiput over the top to the forehead, then down through glabella to nasion
    outer = ellipse(centre, half_x, half_y, 148.0, 333.0, 72)
    per_point = 8  # curve samples per control point: control i is sample i * per_point
    frontal = catmull_rom(
        np.vstack([outer[-2:], points["frontal_low"], points["G"], points["N"], points["nasal_bone"][:1]]), per_point
    )
    vault_outer = np.vstack([outer, frontal[per_point + 1: 4 * per_point + 1]])  # after outer[-1], down to N
    inner = ellipse(centre, half_x - thickness, half_y - thickness * 0.95, 150.0, 352.0, 72)
    occipital = catmull_rom(np.vstack([outer[:1], points["occipital"]]), 8)
    return {
        "vault_outer": vault_outer,
        "vault_inner": inner,
        "occipital": occipital,
        "vault_band": np.vstack([occipital[::-1], vault_outer, points["frontal_sinus"] + (-6.0, 14.0), inner[::-1]]),
        "diploe": ellipse(centre, half_x - thickness * 0.5, half_y - thickness * 0.48, 150.0, 345.0, 60),
        "frontal_sinus": ellipse(points.point("frontal_sinus"), 8.0, 13.0, 0, 360, 24),
    }


def _cranial_base(points: _NamedPoints, sizes: dict[str, float], vault_inner: np.ndarray) -> dict[str, Curve]:
    """The inside of the skull down to the cranial base, the anterior base (planum), the orbital roof, the clivus
    from the dorsum sellae down to basion, and the petrous bone."""
    sella, radius = points.point("S"), sizes["sella_r"]
    tuberculum = sella + (1.05 * radius, -0.35 * radius)
    dorsum_base = sella + (-1.0 * radius, -0.1 * radius)
    intracranial = np.vstack(
        [vault_inner, points["ant_base"][::-1], [tuberculum + (2, -4)], [sella + (-1.2 * radius, -1.2 * radius)],
         points["clivus_endo"], points["Ba"], points["occipital"][::-1] + (8, -6)]
    )
    clivus_endo = catmull_rom(np.vstack([[dorsum_base], points["clivus_endo"], points["Ba"]]), 8)
    clivus_exo = catmull_rom(
        np.vstack([[sella + (1.1 * radius, 1.9 * radius)], points["clivus_exo"], points["Ar"], points["Ba"]]), 8
    )
    return {
        "intracranial": intracranial,
        "ant_base": catmull_rom(np.vstack([[tuberculum + (2, -3)], points["ant_base"]]), 8),
        "orbital_roof": catmull_rom(points["orbital_roof"], 8),
        "clivus_endo": clivus_endo,
        "clivus_exo": clivus_exo,
        "clivus": np.vstack([clivus_endo, clivus_exo[::-1]]),
        "petrous": catmull_rom(points["petrous"], 6, closed=True),
    }


def _sella_turcica(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The sella: a cup around S, open upwards, with the clinoid processes; and the fossa inside it."""
    sella, radius = points.point("S"), sizes["sella_r"]
    cup = ellipse(sella, radius, radius, -12.0, 192.0, 28)
    post_clinoid = np.vstack(
        [cup[-1], sella + (-1.05 * radius, -0.9 * radius), sella + (-0.55 * radius, -1.3 * radius)]
    )
    ant_clinoid = np.vstack([sella + (0.5 * radius, -1.0 * radius), sella + (1.15 * radius, -0.7 * radius), cup[0]])
    return {
        "sella_fossa": ellipse(sella, radius, radius, -15.0, 195.0, 28),
        "sella": np.vstack([ant_clinoid, cup, post_clinoid[1:]]),
    }


def _orbit_and_meatus(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The orbit rim, whose lowest point is orbitale, and the ear canal, with porion at its top."""
    orbit_centre = points.point("Or") + (-0.12 * sizes["orbit_ax"], -sizes["orbit_ay"])
    meatus_radius = sizes["meatus_r"]
    return {
        "orbit": ellipse(orbit_centre, sizes["orbit_ax"], sizes["orbit_ay"], 0, 360, 40),
        "meatus": ellipse(points.point("Po") + (0, meatus_radius * 0.85), meatus_radius * 1.1, meatus_radius * 0.85,
                          0, 360, 24),
    }


def _nasal_bone_and_maxilla(points: _NamedPoints) -> dict[str, Curve]:
    """The nasal bone, the front of the maxilla (ANS, A, prosthion), the piriform aperture, the midface bone as one
    polygon, the maxillary sinus, the pterygomaxillary fissure and the key ridge."""
    nasal_tip = points["nasal_bone"][-1]
    maxilla_front = catmull_rom(np.vstack([points["ANS"], points["A"], points["Pr"]]), 10)
    alveolus = catmull_rom(np.vstack([points["Pr"], points["upper_alveolus"], points["PNS"]]), 8)
    return {
        "nasal_bone": catmull_rom(np.vstack([points["N"], points["nasal_bone"]]), 8),
        "maxilla_front": maxilla_front,
        "piriform": catmull_rom(np.vstack([[nasal_tip], points["piriform"], points["ANS"]]), 8),
        "midface": np.vstack(
            [points["N"], points["nasal_bone"], points["piriform"], maxilla_front, alveolus, points["pterygoid"],
             points["ant_base"][-1:]]
        ),
        "sinus": catmull_rom(points["sinus"], 6, closed=True),
        "ptm": catmull_rom(points["ptm"], 6, closed=True),
        "key_ridge": catmull_rom(points["key_ridge"], 8),
    }


def _palate(points: _NamedPoints, maxilla_front: np.ndarray) -> dict[str, Curve]:
    """The hard palate from PNS to ANS: its nasal floor, its oral side, and the bone between them."""
    nasal_floor = catmull_rom(np.vstack([points["PNS"], points["nasal_floor"], points["ANS"]]), 8)
    oral_palate = catmull_rom(np.vstack([points["Pr"], points["oral_palate"], points["PNS"]]), 8)
    return {
        "nasal_floor": nasal_floor,
        "oral_palate": oral_palate,
        "palate": np.vstack([nasal_floor, maxilla_front[1:], oral_palate[1:]]),
    }


def _mandible(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The mandible: one closed outline through Co, Ar, Go, Me, Gn, Pog, B, Id and Cor; its cortical border from
    the condyle round to infradentale, its lower border from Go to Me, the back of the symphysis, and the border of
    the far half of the mandible (slightly offset, as both halves show on a lateral film)."""
    ring = np.vstack(
        [points["Co"], points["mandible_post"][:1], points["Ar"], points["mandible_post"][1:], points["Go"],
         points["mandible_low"], points["Me"], points["Gn"], points["Pog"], points["symphysis_front"][:1],
         points["B"], points["symphysis_front"][1:], points["Id"], points["mandible_alveolus"],
         points["ramus_front"], points["Cor"], points["sigmoid"]]
    )
    per_point = 8  # curve samples per ring point: ring point i is sample i * per_point
    outline = catmull_rom(ring, per_point, closed=True)
    me_index = 2 + len(points["mandible_post"]) + 1 + len(points["mandible_low"])  # of Me in the ring
    id_index = me_index + 3 + len(points["symphysis_front"]) + 1
    go_index = me_index - len(points["mandible_low"]) - 1
    border = outline[: id_index * per_point + 1]  # condyle -> ramus -> angle -> lower border -> symphysis -> Id
    mirror = outline + (sizes["mirror_dx"], sizes["mirror_dy"])
    return {
        "mandible": outline,
        "mandible_border": border,
        "mandible_lower": outline[go_index * per_point: me_index * per_point + 1],
        "symphysis_back": catmull_rom(np.vstack([points["symphysis_back"], points["Me"]]), 8),
        "mandible_mirror_border": mirror[: len(border)],
    }


def _teeth(points: _NamedPoints) -> dict[str, Curve]:
    """The incisors (outline, crown, pulp) from apex to tip, and the premolars and molars of each jaw, each as
    ``(outline, crown)``, standing on the template's occlusal points with the roots away from the bite."""
    return {
        "upper_incisor": tooth(points.point("UIA"), points.point("UIT"), 19.0),
        "lower_incisor": tooth(points.point("LIA"), points.point("LIT"), 17.0),
        "upper_posterior_teeth": _posterior_teeth(points["upper_teeth"], up=1.0, root_height=30.0),
        "lower_posterior_teeth": _posterior_teeth(points["lower_teeth"], up=-1.0, root_height=34.0),
    }


def _posterior_teeth(occlusal: np.ndarray, up: float, root_height: float) -> tuple[tuple[np.ndarray, ...], ...]:
    """One ``(outline, crown)`` per occlusal point ``(5, 2)``, front to back: narrower premolars, then molars."""
    widths = (15.0, 16.0, 17.0, 24.0, 25.0)
    return tuple(
        posterior_tooth(x, y, widths[i], 15.0 if i > 2 else 13.0, root_height, up) for i, (x, y) in enumerate(occlusal)
    )


def _face_profile_points(points: _NamedPoints) -> np.ndarray:
    """The soft-tissue profile's control points from soft-tissue nasion down to soft-tissue menton ``(n, 2)``."""
    return np.vstack(
        [points["N'"], points["soft_nose"][:3], points["Pn"], points["soft_nose"][3:], points["Sn"],
         points["soft_lip_up"][:1], points["UL"], points["soft_lip_up"][1:], points["Sto"], points["soft_lip_low"][:1],
         points["LL"], points["soft_lip_low"][1:], points["Sm'"], points["soft_chin"][:1], points["PogS"],
         points["soft_chin"][1:2], points["Me'"]]
    )


def _soft_tissue(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The soft-tissue silhouette: the profile from the forehead down to the neck, the nape and the scalp over the
    vault; and the facial part of the profile alone (N' to Me')."""
    face = _face_profile_points(points)
    profile_points = np.vstack(
        [points["soft_forehead"], points["G'"], face, points["soft_chin"][2:], points["neck_front"]]
    )
    scalp = ellipse(points.point("vault_centre"), sizes["vault_ax"] + 0.03 * U, sizes["vault_ay"] + 0.025 * V,
                    140.0, 330.0, 60)
    profile = catmull_rom(np.vstack([scalp[-2:], profile_points]), 8)[8:]  # from the scalp's end on, smoothly
    neck_back = points["neck_back"]
    nape = catmull_rom(np.vstack([neck_back[-1:], scalp[:1]]), 6)
    return {
        "profile": profile,
        "silhouette": np.vstack([profile, neck_back, nape, scalp]),
        "profile_face": catmull_rom(face, 8),
    }


def _airway_and_hyoid(points: _NamedPoints) -> dict[str, Curve]:
    """The pharyngeal airway (one polygon between its front and back walls) and the hyoid bone."""
    return {
        "airway": np.vstack([catmull_rom(points["airway_front"], 6), catmull_rom(points["airway_back"], 6)]),
        "hyoid": catmull_rom(points["hyoid"], 5, closed=True),
    }


def _cervical_spine(points: _NamedPoints, sizes: dict[str, float]) -> dict[str, Curve]:
    """The vertebrae C2..C5 (bodies and posterior arches, smoothed) and the two arches of the atlas (C1), tilted
    together by the neck posture and placed at the spine anchor."""
    anchor = points.point("spine")
    pivot, tilt = np.array([0.25 * U, 0.6 * V]), sizes["spine_tilt"]
    bodies = [rotate_about(body, pivot, tilt) + anchor for body in VERTEBRA_BODIES]
    arches = [rotate_about(arch, pivot, tilt) + anchor for arch in VERTEBRA_ARCHES]
    return {
        "vertebra_bodies": tuple(catmull_rom(body, 4, closed=True) for body in bodies),
        "vertebra_arches": tuple(catmull_rom(arch, 5, closed=True) for arch in arches),
        "atlas": tuple(
            ellipse(rotate_about(centre[0], pivot, tilt) + anchor, half_x, half_y)
            for centre, (half_x, half_y) in zip(ATLAS, [(9.0, 12.0), (14.0, 10.0)])
        ),
    }


# --------------------------------------------------------------------------------------------------------------
# Landmarks


def _contours_for_extras(curves: dict[str, Curve]) -> list[np.ndarray]:
    """The drawn contours that landmarks beyond the named ones are spread over (all in the facial region)."""
    closed = [
        np.vstack([c, c[:1]])
        for c in (curves["mandible"], curves["ptm"], curves["upper_incisor"][0], curves["lower_incisor"][0])
    ]
    return [
        closed[0], curves["profile_face"], curves["orbit"], curves["maxilla_front"], curves["palate"], closed[2],
        closed[3], curves["sella"], curves["ant_base"], curves["nasal_bone"], closed[1], curves["symphysis_back"],
    ]


def landmarks_ref(points: np.ndarray, curves: dict[str, Curve], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(k, 2)`` landmarks in reference pixels, and the points that bound every possible landmark (for the pose,
    so that the pose does not depend on ``k``)."""
    named = np.stack([points[IX[n]][0] for n in _ALL_NAMED])
    spread_over = _contours_for_extras(curves)
    bound = np.vstack([named, *spread_over])
    if k <= len(named):
        return named[:k], bound
    extra = []
    golden = (math.sqrt(5.0) - 1.0) / 2.0  # successive rounds land between earlier points, never on them
    for j in range(k - len(named)):
        contour = spread_over[j % len(spread_over)]
        extra.append(point_at(contour, (0.5 + (j // len(spread_over)) * golden) % 1.0))
    return np.vstack([named, np.asarray(extra)]), bound
