"""Cephalometric measurements on hand-built geometry whose answers are known exactly (points placed by a
trigonometric construction, expected values written as literals), signs by anatomy, the mirror test, the ISBI
classes, and measurements that cannot be computed reported as unavailable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cephalo.analysis.analyze import analyze, parse_mapping
from cephalo.analysis.classes import ISBI_CLASSES

ISBI = ("S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go", "LIT", "UIT", "UL", "LL", "Sn", "PogS", "PNS", "ANS",
        "Ar")


def polar(origin, length, degrees_below_anterior):
    """A point ``length`` px from ``origin`` (image pixels, face to the right: +x anterior, +y down), in the
    direction ``degrees_below_anterior`` measured from +x towards +y."""
    a = math.radians(degrees_below_anterior)
    return origin[0] + length * math.cos(a), origin[1] + length * math.sin(a)


def face(**points):
    """One image: ``(1, K, 2)`` landmarks and their names."""
    names = tuple(points)
    return np.array([[points[n] for n in names]], np.float64), names


def value(landmarks, names, measure, spacing=0.1):
    return float(analyze(landmarks, names, [spacing]).values[measure][0])


def test_sna_snb_anb_and_the_sign_of_anb():
    n = (1000.0, 500.0)
    s = (400.0, 500.0)  # S-N horizontal: the angle at N from N->S = 180 degrees below anterior
    a = polar(n, 300, 180 - 80)  # S-N-A = 80
    b = polar(n, 350, 180 - 78)  # S-N-B = 78
    lm, names = face(S=s, N=n, A=a, B=b)
    assert value(lm, names, "SNA") == pytest.approx(80.000, abs=1e-9)
    assert value(lm, names, "SNB") == pytest.approx(78.000, abs=1e-9)
    assert value(lm, names, "ANB") == pytest.approx(2.000, abs=1e-9)
    lm, names = face(S=s, N=n, A=a, B=polar(n, 350, 180 - 83))  # B ahead of A: negative ANB (class III)
    assert value(lm, names, "ANB") == pytest.approx(-3.000, abs=1e-9)


def test_planes_fh_mp_sn_mp_fma_and_y_axis():
    po, o_r = (300.0, 600.0), (900.0, 600.0)  # FH horizontal
    s, n = (350.0, 450.0), polar((350.0, 450.0), 650, -7)  # S-N rises 7 degrees anteriorly
    go = (400.0, 1100.0)
    me = polar(go, 500, 25)  # the mandibular plane falls 25 degrees anteriorly
    gn = polar(go, 520, 23)
    lm, names = face(S=s, N=n, Po=po, Or=o_r, Go=go, Me=me, Gn=gn)
    assert value(lm, names, "FH_MP") == pytest.approx(25.000, abs=1e-9)
    assert value(lm, names, "SN_MP") == pytest.approx(32.000, abs=1e-9)  # 7 + 25
    assert value(lm, names, "SN_GoGn") == pytest.approx(30.000, abs=1e-9)  # the challenge's "FMA": 7 + 23
    lm, names = face(S=s, N=n, Po=po, Or=o_r, Gn=polar(s, 700, 60))
    assert value(lm, names, "YAxis") == pytest.approx(60.000, abs=1e-9)


def test_odi_and_apdi_with_the_palatal_plane_tilted_up():
    po, o_r = (300.0, 600.0), (900.0, 600.0)
    pns = (500.0, 700.0)
    ans = polar(pns, 400, -5)  # tilted up anteriorly by 5 degrees: FH to PP = -5
    go = (400.0, 1100.0)
    me = polar(go, 500, 25)  # Me->Go points 180 + 25 below anterior
    b = (950.0, 1000.0)
    a = polar(b, 250, 180 + 25 + 75)  # B->A (up, a little forward) at 75 degrees from Me->Go (at 180 + 25)
    n, pog = (1000.0, 400.0), (1000.0, 1150.0)  # N-Pog vertical: facial angle 90
    lm, names = face(Po=po, Or=o_r, PNS=pns, ANS=ans, Go=go, Me=me, A=a, B=b, N=n, Pog=pog)
    assert value(lm, names, "ODI") == pytest.approx(70.000, abs=1e-9)  # 75 - 5
    assert value(lm, names, "FacialAngle") == pytest.approx(90.000, abs=1e-9)
    a2 = (900.0, 800.0)
    b2 = polar(a2, 200, 90 - 4)  # A->B leans 4 degrees forward of N->Pog: B ahead of A
    lm, names = face(Po=po, Or=o_r, PNS=pns, ANS=ans, A=a2, B=b2, N=n, Pog=pog)
    assert value(lm, names, "AB_NPog") == pytest.approx(4.000, abs=1e-9)
    assert value(lm, names, "APDI") == pytest.approx(89.000, abs=1e-9)  # 90 + 4 - 5


def test_convexity_fhi_bjork_and_the_tweed_triangle():
    n, pog = (1000.0, 400.0), (1000.0, 1200.0)
    a = (1000.0 + 400 * math.tan(math.radians(5)), 800.0)  # N-A-Pog bent 10 degrees at A, A ahead: +10
    lm, names = face(N=n, A=a, Pog=pog)
    assert value(lm, names, "Convexity") == pytest.approx(10.000, abs=1e-9)
    lm, names = face(N=n, A=(2000 - a[0], a[1]), Pog=pog)
    assert value(lm, names, "Convexity") == pytest.approx(-10.000, abs=1e-9)  # A behind N-Pog: concave

    lm, names = face(S=(0.0, 0.0), Go=(0.0, 650.0), N=(700.0, 0.0), Me=(700.0, 1000.0))
    assert value(lm, names, "FHI") == pytest.approx(0.65, abs=1e-12)

    s = (400.0, 500.0)
    n = polar(s, 600, 0)
    ar = polar(s, 300, 120)  # N-S-Ar = 120 (S->N at 0)
    go = polar(ar, 400, (120 + 180) + 145)  # S-Ar-Go = 145 (Ar->S at 300), Go below Ar
    me = polar(go, 450, (85 + 180) + 130)  # Ar-Go-Me = 130 (Go->Ar at 265), Me ahead of Go
    lm, names = face(S=s, N=n, Ar=ar, Go=go, Me=me)
    angles = [value(lm, names, m) for m in ("SaddleAngle", "ArticularAngle", "GonialAngle")]
    assert angles == pytest.approx([120.0, 145.0, 130.0], abs=1e-9)  # Björk's three angles, not their sum

    po, o_r, go, me = (300.0, 600.0), (900.0, 600.0), (400.0, 1100.0), polar((400.0, 1100.0), 500, 25)
    lia = (900.0, 1150.0)
    lit = polar(lia, 220, -(90 + 10))  # tip above the apex, 10 degrees back from vertical
    lm, names = face(Po=po, Or=o_r, Go=go, Me=me, LIT=lit, LIA=lia)
    fmia, impa, fh_mp = (value(lm, names, m) for m in ("FMIA", "IMPA", "FH_MP"))
    assert fmia == pytest.approx(100.000, abs=1e-9) and impa == pytest.approx(55.000, abs=1e-9)
    assert fmia + impa + fh_mp == pytest.approx(180.000, abs=1e-9)


def test_incisors_u1_sn_and_the_interincisal_angle():
    s, n = (400.0, 500.0), (1000.0, 500.0)
    uia = (950.0, 800.0)
    uit = polar(uia, 230, 90 - 13)  # the crown 13 degrees forward of vertical: U1-SN = 90 + 13
    lia = (940.0, 1200.0)
    lit = polar(lia, 220, -(90 - 14))  # the lower crown 14 degrees forward of vertical
    lm, names = face(S=s, N=n, UIA=uia, UIT=uit, LIA=lia, LIT=lit)
    assert value(lm, names, "U1_SN") == pytest.approx(103.000, abs=1e-9)
    assert value(lm, names, "Interincisal") == pytest.approx(153.000, abs=1e-9)  # 180 - 13 - 14


@pytest.mark.parametrize("overjet_px, spacing, expected, expected_class", [
    (30, 0.1, 3.0, 1), (10, 0.1, 1.0, 2), (0, 0.1, 0.0, 2), (-10, 0.1, -1.0, 3), (50, 0.1, 5.0, 4),
    (20, 0.1, 2.0, 1), (45, 0.1, 4.5, 1), (60, 0.05, 3.0, 1),
])
def test_mw_is_signed_in_mm_and_its_classes_cover_0_to_2(overjet_px, spacing, expected, expected_class):
    lm, names = face(S=(0.0, 0.0), N=(600.0, 0.0), LIT=(900.0, 1000.0), UIT=(900.0 + overjet_px, 1000.0))
    result = analyze(lm, names, [spacing])
    assert float(result.values["IncisalTipDistance"][0]) == pytest.approx(expected, abs=1e-9)
    assert int(result.classes["MW"][0]) == expected_class


def test_mw_is_the_distance_between_the_tips_not_its_horizontal_part():
    lm, names = face(S=(0.0, 0.0), N=(600.0, 0.0), LIT=(900.0, 1000.0), UIT=(930.0, 960.0))  # 30, 40 px: 50
    assert value(lm, names, "IncisalTipDistance", spacing=0.1) == pytest.approx(5.000, abs=1e-9)


def test_class_thresholds_are_the_challenge_s():
    classify = {name: rule.classify for name, rule in ISBI_CLASSES.items()}
    assert classify["ANB"](np.array([3.2, 3.19, 5.7, 5.71])).tolist() == [1, 3, 1, 2]
    assert classify["SNB"](np.array([74.5, 78.8])).tolist() == [2, 3]
    assert classify["SNA"](np.array([79.3, 83.3])).tolist() == [3, 2]
    assert classify["ODI"](np.array([68.3, 80.6])).tolist() == [3, 2]
    assert classify["APDI"](np.array([77.5, 85.3])).tolist() == [2, 3]
    assert classify["FHI"](np.array([0.64, 0.76])).tolist() == [3, 2]
    assert classify["FMA"](np.array([26.7, 31.5, np.nan])).tolist() == [3, 2, 0]


def isbi_image():
    """A realistic face (ISBI training image 001's ground truth, original pixels)."""
    points = [832, 994, 1469, 1032, 1295, 1277, 596, 1203, 1370, 1643, 1364, 2056, 1329, 2212, 1236, 2263, 1294,
              2261, 695, 1814, 1459, 1869, 1449, 1864, 1587, 1752, 1570, 2014, 1508, 1610, 1412, 2260, 940, 1510,
              1402, 1561, 664, 1336]
    return np.array(points, np.float64).reshape(1, 19, 2)


def test_a_face_looking_left_measures_like_the_same_face_looking_right():
    right = isbi_image()
    left = right.copy()
    left[..., 0] = 1934 - left[..., 0]  # mirrored in an image 1935 px wide
    a, b = analyze(right, ISBI, [0.1]), analyze(left, ISBI, [0.1])
    for name, values in a.values.items():
        np.testing.assert_allclose(b.values[name], values, atol=1e-9, equal_nan=True, err_msg=name)
    for name, classes in a.classes.items():
        assert b.classes[name].tolist() == classes.tolist(), name
    assert a.values["ANB"][0] != 0 and a.values["IncisalTipDistance"][0] < 0  # signed, not only magnitudes


def test_what_cannot_be_computed_is_unavailable_not_a_number():
    result = analyze(isbi_image(), ISBI, [None])
    assert "LIA" in result.unavailable["IMPA"] and "UIA" in result.unavailable["U1_SN"]
    assert "pixel spacing" in result.unavailable["IncisalTipDistance"] and result.classes["MW"].tolist() == [0]
    row = result.row(0)
    assert row["IMPA"] is None and row["IncisalTipDistance"] is None and row["MW_class"] is None
    assert row["SNA"] == pytest.approx(result.values["SNA"][0]) and row["IMPA_vs_norm"] is None
    assert row["ANB_class"] in (1, 2, 3)


def test_other_landmark_names_map_onto_the_table():
    names = tuple(f"L{i}" for i in range(1, 20))
    mapping = parse_mapping(",".join(f"L{i + 1}={n}" for i, n in enumerate(ISBI)))
    mapped = analyze(isbi_image(), names, [0.1], mapping)
    direct = analyze(isbi_image(), ISBI, [0.1])
    assert mapped.values["APDI"][0] == direct.values["APDI"][0]
    assert "needs S, N, A" in analyze(isbi_image(), names, [0.1]).unavailable["SNA"]
    with pytest.raises(ValueError, match="is not NAME=TABLE_NAME"):
        parse_mapping("L1=S,L2")


def test_mcnamara_distances_to_the_nasion_perpendicular_and_the_facial_heights():
    po, o_r = (300.0, 600.0), (900.0, 600.0)  # FH horizontal: the N perpendicular is vertical through N
    n = (1000.0, 400.0)
    lm, names = face(Po=po, Or=o_r, N=n, A=(1010.0, 800.0), Pog=(960.0, 1200.0), ANS=(1030.0, 750.0),
                     Me=(950.0, 1300.0), S=(400.0, 450.0), Go=(450.0, 1100.0))
    assert value(lm, names, "A_NPerp", spacing=0.1) == pytest.approx(1.0, abs=1e-9)  # 10 px ahead
    assert value(lm, names, "Pog_NPerp", spacing=0.1) == pytest.approx(-4.0, abs=1e-9)  # 40 px behind
    n_me = math.dist(n, (950.0, 1300.0))
    assert value(lm, names, "N_Me", spacing=0.1) == pytest.approx(n_me * 0.1, abs=1e-9)
    assert value(lm, names, "LAFH_ratio") == pytest.approx(100 * math.dist((1030.0, 750.0), (950.0, 1300.0)) / n_me)
    mirrored = lm.copy()
    mirrored[..., 0] = 2000 - mirrored[..., 0]  # the same face looking left
    assert float(analyze(mirrored, names, [0.1]).values["Pog_NPerp"][0]) == pytest.approx(-4.0, abs=1e-9)


def test_a_norm_verdict_and_an_isbi_class_are_labelled_apart_and_in_words():
    """The report rated ANB 2.2 degrees against Steiner's 2 ± 2 while its ANB_class 3 called it 'class III' by the
    challenge's thresholds, with nothing to say which was which: now each column says what it is."""
    n, s = (1000.0, 500.0), (400.0, 500.0)
    lm, names = face(S=s, N=n, A=polar(n, 300, 180 - 80), B=polar(n, 350, 180 - 77.8))  # ANB 2.2
    row = analyze(lm, names, [0.1]).row(0)
    assert row["ANB"] == pytest.approx(2.2) and row["ANB_vs_norm"] == "within norm"
    assert row["ANB_class"] == 3 and row["ANB_isbi_class"] == "class III"
    lm, names = face(S=s, N=n, A=polar(n, 300, 180 - 86), B=polar(n, 350, 180 - 78))  # ANB 8
    row = analyze(lm, names, [0.1]).row(0)
    assert row["ANB_vs_norm"] == "above norm (class II tendency)" and row["SNA_vs_norm"] == (
        "above norm (protrusive maxilla)") and row["ANB_isbi_class"] == "class II"


def test_evaluate_analysis_isbi_success_rates_are_unchanged_by_the_renames():
    """The challenge's classification success rates and confusion matrices of a fixed set of 40 perturbed faces,
    as the code gave them before the vocabulary changed (FMA -> SN_GoGn, MW -> IncisalTipDistance)."""
    from cephalo.evaluation.analysis import compare_measurements

    rng = np.random.default_rng(7)
    base = isbi_image()[0]
    truth = np.stack([(base - base.mean(0)) * s + base.mean(0) + rng.normal(0, 25, base.shape)
                      for s in rng.uniform(0.9, 1.1, 40)])
    predicted = truth + rng.normal(0, 15, truth.shape)
    result = compare_measurements(predicted, truth, ISBI, [0.1] * 40)["classification"]
    before = {"ANB": [97.5, [[0, 0, 0], [0, 0, 0], [1, 0, 39]]], "SNB": [100.0, [[0, 0, 0], [0, 0, 0], [0, 0, 40]]],
              "SNA": [77.5, [[6, 2, 2], [2, 23, 1], [2, 0, 2]]], "ODI": [100.0, [[1, 0, 0], [0, 0, 0], [0, 0, 39]]],
              "APDI": [90.0, [[2, 0, 1], [1, 0, 0], [2, 0, 34]]], "FHI": [77.5, [[18, 0, 7], [0, 0, 0], [2, 0, 13]]],
              "FMA": [80.0, [[5, 4, 0], [4, 25, 0], [0, 0, 2]]],
              "MW": [62.5, [[0, 1, 0, 2], [2, 0, 1, 0], [1, 4, 24, 0], [2, 0, 2, 1]]]}
    assert {name: [c["success_rate"], c["confusion"]] for name, c in result.items()} == before
