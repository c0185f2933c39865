"""Where things are in a synthetic cephalogram: the template varied per image (face height, jaw positions, incisor
inclination, soft tissue, ...), every drawn contour built through the varied points, and the choice of landmarks
(the named points, then points spread over the contours)."""

from __future__ import annotations

import math

import numpy as np

from .shapes import _catmull_rom, _ellipse, _point_at, _rotate_about, _tooth
from .template import _BASE, _GROUPS, _IX, _U, _V, EXTRA_LANDMARKS, SYNTHETIC_LANDMARKS

# --------------------------------------------------------------------------------------------------------------
# Shape: the template, varied per image


_NAMED_EXTRA = tuple(abbr for abbr, _ in EXTRA_LANDMARKS)
_ALL_NAMED = SYNTHETIC_LANDMARKS + _NAMED_EXTRA


def _shape(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """The template points after this image's anatomical variation (reference pixels) and the size parameters."""
    X = _BASE.copy()
    g = _GROUPS
    X += rng.normal(0.0, 1.2, X.shape)  # per-point jitter, ~0.45 mm

    def P(name):
        return X[_IX[name]]

    # face height: stretch everything below the cranial base
    fh = rng.uniform(0.93, 1.07)
    y0 = 0.42 * _V
    w = np.clip((X[:, 1] - y0) / (0.1 * _V), 0.0, 1.0)
    X[:, 1] += w * (X[:, 1] - y0) * (fh - 1.0)
    # maxillary position (with the upper incisor, upper lip and nose)
    dx_max = rng.uniform(-0.012, 0.012) * _U
    for grp in ("maxilla", "upper_incisor", "soft_upper", "nose"):
        X[g[grp], 0] += dx_max
    # nose size, about subnasale
    nose = rng.uniform(0.85, 1.15)
    sn = P("Sn")[0].copy()
    X[g["nose"]] = sn + (X[g["nose"]] - sn) * (nose, 0.5 + 0.5 * nose)
    # upper incisor inclination about its apex
    uia = P("UIA")[0].copy()
    X[g["upper_incisor"]] = _rotate_about(X[g["upper_incisor"]], uia, rng.uniform(-6.0, 6.0))
    # mandible: length and rotation about the condyle, carrying the lower incisor and soft-tissue chin
    ml, mrot = rng.uniform(0.92, 1.08), rng.uniform(-2.5, 2.5)
    co = P("Co")[0].copy()
    for grp in ("mandible", "lower_incisor", "soft_lower"):
        X[g[grp]] = _rotate_about(X[g[grp]], co, mrot, ml)
    lia = P("LIA")[0].copy()
    X[g["lower_incisor"]] = _rotate_about(X[g["lower_incisor"]], lia, rng.uniform(-6.0, 6.0))
    # soft-tissue thickness
    X[g["soft_upper"], 0] += rng.uniform(-0.01, 0.01) * _U
    X[g["soft_lower"], 0] += rng.uniform(-0.01, 0.01) * _U
    X[g["soft_cranial"], 0] += rng.uniform(-0.006, 0.006) * _U
    # neck posture
    X[g["spine"], 0] += rng.uniform(-0.015, 0.015) * _U
    sizes = {
        "vault_ax": 0.345 * _U * rng.uniform(0.96, 1.04),
        "vault_ay": 0.310 * _V * rng.uniform(0.96, 1.04),
        "vault_th": rng.uniform(10.0, 14.0),
        "sella_r": 11.0 * rng.uniform(0.8, 1.2),
        "orbit_ax": 0.040 * _U * rng.uniform(0.9, 1.1),
        "orbit_ay": 0.044 * _V * rng.uniform(0.9, 1.1),
        "meatus_r": 8.0 * rng.uniform(0.85, 1.15),
        "spine_tilt": rng.uniform(-4.0, 4.0),
        "mirror_dx": rng.uniform(-8.0, 4.0),
        "mirror_dy": rng.uniform(0.0, 8.0),
    }
    return X, sizes


def _geometry(X: np.ndarray, sz: dict[str, float]) -> dict[str, np.ndarray]:
    """Every drawn curve and polygon in reference pixels, built through the (varied) template points."""

    def p(name):
        return X[_IX[name]]

    def p1(name):
        return X[_IX[name]][0]

    G: dict[str, np.ndarray] = {}
    vc = p1("vault_centre")
    ax, ay, th = sz["vault_ax"], sz["vault_ay"], sz["vault_th"]
    # cranial vault: from the occiput over the top to the forehead, then down through glabella to nasion
    outer = _ellipse(vc, ax, ay, 148.0, 333.0, 72)
    seg = 8  # curve samples per control point: control i is sample i * seg
    frontal = _catmull_rom(np.vstack([outer[-2:], p("frontal_low"), p("G"), p("N"), p("nasal_bone")[:1]]), seg)
    G["vault_outer"] = np.vstack([outer, frontal[seg + 1: 4 * seg + 1]])  # after outer[-1], down to N
    inner = _ellipse(vc, ax - th, ay - th * 0.95, 150.0, 352.0, 72)
    G["vault_inner"] = inner
    occ = _catmull_rom(np.vstack([outer[:1], p("occipital")]), 8)
    G["occipital"] = occ
    G["vault_band"] = np.vstack([occ[::-1], G["vault_outer"], p("frontal_sinus") + (-6.0, 14.0), inner[::-1]])
    G["diploe"] = _ellipse(vc, ax - th * 0.5, ay - th * 0.48, 150.0, 345.0, 60)
    G["frontal_sinus"] = _ellipse(p1("frontal_sinus"), 8.0, 13.0, 0, 360, 24)
    # cranial base
    s, r = p1("S"), sz["sella_r"]
    tuberculum = s + (1.05 * r, -0.35 * r)
    dorsum_base = s + (-1.0 * r, -0.1 * r)
    G["intracranial"] = np.vstack(
        [inner, p("ant_base")[::-1], [tuberculum + (2, -4)], [s + (-1.2 * r, -1.2 * r)], p("clivus_endo"),
         p("Ba"), p("occipital")[::-1] + (8, -6)]
    )
    G["ant_base"] = _catmull_rom(np.vstack([[tuberculum + (2, -3)], p("ant_base")]), 8)
    G["orbital_roof"] = _catmull_rom(p("orbital_roof"), 8)
    clivus_endo = _catmull_rom(np.vstack([[dorsum_base], p("clivus_endo"), p("Ba")]), 8)
    clivus_exo = _catmull_rom(np.vstack([[s + (1.1 * r, 1.9 * r)], p("clivus_exo"), p("Ar"), p("Ba")]), 8)
    G["clivus_endo"], G["clivus_exo"] = clivus_endo, clivus_exo
    G["clivus"] = np.vstack([clivus_endo, clivus_exo[::-1]])
    G["petrous"] = _catmull_rom(p("petrous"), 6, closed=True)
    # sella turcica: a cup around S, open upwards, with the clinoid processes
    G["sella_fossa"] = _ellipse(s, r, r, -15.0, 195.0, 28)
    cup = _ellipse(s, r, r, -12.0, 192.0, 28)
    post_clinoid = np.vstack([cup[-1], s + (-1.05 * r, -0.9 * r), s + (-0.55 * r, -1.3 * r)])
    ant_clinoid = np.vstack([s + (0.5 * r, -1.0 * r), s + (1.15 * r, -0.7 * r), cup[0]])
    G["sella"] = np.vstack([ant_clinoid, cup, post_clinoid[1:]])
    # orbit: the lowest point of the rim is orbitale
    orb_c = p1("Or") + (-0.12 * sz["orbit_ax"], -sz["orbit_ay"])
    orbit = _ellipse(orb_c, sz["orbit_ax"], sz["orbit_ay"], 0, 360, 40)
    G["orbit"] = orbit
    # meatus: porion at its top
    mr = sz["meatus_r"]
    G["meatus"] = _ellipse(p1("Po") + (0, mr * 0.85), mr * 1.1, mr * 0.85, 0, 360, 24)
    # nasal bone and midface
    nasal_tip = p("nasal_bone")[-1]
    G["nasal_bone"] = _catmull_rom(np.vstack([p("N"), p("nasal_bone")]), 8)
    front_max = _catmull_rom(np.vstack([p("ANS"), p("A"), p("Pr")]), 10)
    G["maxilla_front"] = front_max
    G["piriform"] = _catmull_rom(np.vstack([[nasal_tip], p("piriform"), p("ANS")]), 8)
    alveolus = _catmull_rom(np.vstack([p("Pr"), p("upper_alveolus"), p("PNS")]), 8)
    G["midface"] = np.vstack(
        [p("N"), p("nasal_bone"), p("piriform"), front_max, alveolus, p("pterygoid"), p("ant_base")[-1:]]
    )
    G["sinus"] = _catmull_rom(p("sinus"), 6, closed=True)
    G["ptm"] = _catmull_rom(p("ptm"), 6, closed=True)
    G["key_ridge"] = _catmull_rom(p("key_ridge"), 8)
    nasal_floor = _catmull_rom(np.vstack([p("PNS"), p("nasal_floor"), p("ANS")]), 8)
    oral = _catmull_rom(np.vstack([p("Pr"), p("oral_palate"), p("PNS")]), 8)
    G["nasal_floor"], G["oral_palate"] = nasal_floor, oral
    G["palate"] = np.vstack([nasal_floor, front_max[1:], oral[1:]])
    # mandible: one closed outline through Co, Ar, Go, Me, Gn, Pog, B, Id, Cor
    ring = np.vstack(
        [p("Co"), p("mandible_post")[:1], p("Ar"), p("mandible_post")[1:], p("Go"), p("mandible_low"), p("Me"),
         p("Gn"), p("Pog"), p("symphysis_front")[:1], p("B"), p("symphysis_front")[1:], p("Id"),
         p("mandible_alveolus"), p("ramus_front"), p("Cor"), p("sigmoid")]
    )
    n_seg = 8
    mand = _catmull_rom(ring, n_seg, closed=True)
    G["mandible"] = mand
    k_me = 2 + len(p("mandible_post")) + 1 + len(p("mandible_low"))  # index of Me in ring
    k_id = k_me + 3 + len(p("symphysis_front")) + 1
    G["mandible_border"] = mand[: k_id * n_seg + 1]  # condyle -> ramus -> angle -> lower border -> symphysis -> Id
    G["mandible_lower"] = mand[(k_me - len(p("mandible_low")) - 1) * n_seg: k_me * n_seg + 1]
    G["symphysis_back"] = _catmull_rom(np.vstack([p("symphysis_back"), p("Me")]), 8)
    # teeth
    G["upper_incisor"] = _tooth(p1("UIA"), p1("UIT"), 19.0)
    G["lower_incisor"] = _tooth(p1("LIA"), p1("LIT"), 17.0)
    # soft tissue silhouette: profile from the forehead down to the neck, the nape, and the scalp over the vault
    profile = np.vstack(
        [p("soft_forehead"), p("G'"), p("N'"), p("soft_nose")[:3], p("Pn"), p("soft_nose")[3:], p("Sn"),
         p("soft_lip_up")[:1], p("UL"), p("soft_lip_up")[1:], p("Sto"), p("soft_lip_low")[:1], p("LL"),
         p("soft_lip_low")[1:], p("Sm'"), p("soft_chin")[:1], p("PogS"), p("soft_chin")[1:2], p("Me'"),
         p("soft_chin")[2:], p("neck_front")]
    )
    scalp = _ellipse(vc, ax + 0.03 * _U, ay + 0.025 * _V, 140.0, 330.0, 60)
    prof = _catmull_rom(np.vstack([scalp[-2:], profile]), 8)[8:]
    G["profile"] = prof
    neck_back = p("neck_back")
    G["silhouette"] = np.vstack([prof, neck_back, _catmull_rom(np.vstack([neck_back[-1:], scalp[:1]]), 6), scalp])
    G["profile_face"] = _catmull_rom(
        np.vstack([p("N'"), p("soft_nose")[:3], p("Pn"), p("soft_nose")[3:], p("Sn"), p("soft_lip_up")[:1], p("UL"),
                   p("soft_lip_up")[1:], p("Sto"), p("soft_lip_low")[:1], p("LL"), p("soft_lip_low")[1:], p("Sm'"),
                   p("soft_chin")[:1], p("PogS"), p("soft_chin")[1:2], p("Me'")]), 8)
    G["airway"] = np.vstack([_catmull_rom(p("airway_front"), 6), _catmull_rom(p("airway_back"), 6)])
    G["hyoid"] = _catmull_rom(p("hyoid"), 5, closed=True)
    G["lower_teeth_line"] = p("lower_teeth")
    G["upper_teeth_line"] = p("upper_teeth")
    return G


def _contours_for_extras(G: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The drawn contours that landmarks beyond the named ones are spread over (all in the facial region)."""
    closed = [np.vstack([c, c[:1]]) for c in (G["mandible"], G["ptm"], G["upper_incisor"][0], G["lower_incisor"][0])]
    return [
        closed[0], G["profile_face"], G["orbit"], G["maxilla_front"], G["palate"], closed[2], closed[3],
        G["sella"], G["ant_base"], G["nasal_bone"], closed[1], G["symphysis_back"],
    ]


def _landmarks_ref(X: np.ndarray, G: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) landmarks in reference pixels, and the points that bound every possible landmark (for the pose)."""
    named = np.stack([X[_IX[n]][0] for n in _ALL_NAMED])
    contours = _contours_for_extras(G)
    bound = np.vstack([named, *contours])
    if k <= len(named):
        return named[:k], bound
    extra = []
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for j in range(k - len(named)):
        c = contours[j % len(contours)]
        extra.append(_point_at(c, (0.5 + (j // len(contours)) * golden) % 1.0))
    return np.vstack([named, np.asarray(extra)]), bound
