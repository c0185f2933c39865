import json
import math

import numpy as np
import pytest

from cephalo.datasets.aariz import AARIZ_LANDMARKS, AARIZ_SPLITS, looks_like_aariz, read_aariz
from tests.fixtures_datasets import AarizBuilder, aariz_annotation, annotation_points, example_annotation


def issues_for(issues, path):
    return [i.problem for i in issues if str(i.path) == str(path)]


def test_constants_match_the_real_annotation():
    assert len(AARIZ_LANDMARKS) == 29 and len(set(AARIZ_LANDMARKS)) == 29
    assert AARIZ_SPLITS == ("train", "valid", "test")
    assert AARIZ_LANDMARKS[:3] == ("A", "ANS", "B") and AARIZ_LANDMARKS[-3:] == ("N`", "Pog`", "Sn")
    assert {lm["symbol"] for lm in example_annotation()["landmarks"]} == set(AARIZ_LANDMARKS)


def test_canonical_order_and_float_mean_of_senior_and_junior(tmp_path):
    b = AarizBuilder(tmp_path)
    docs = {cid: b.add_case(cid, cvm=cvm) for cid, cvm in (("ckb", 2), ("cka", 5))}
    records, issues = read_aariz(tmp_path, "train")
    assert issues == []
    assert [r.case_id for r in records] == ["cka", "ckb"]
    for r in records:
        senior = annotation_points(docs[r.case_id]["senior"], AARIZ_LANDMARKS)
        junior = annotation_points(docs[r.case_id]["junior"], AARIZ_LANDMARKS)
        assert r.landmark_names == AARIZ_LANDMARKS
        assert r.landmarks.dtype == np.float64 and r.landmarks.shape == (29, 2)
        np.testing.assert_array_equal(r.landmarks, (senior + junior) / 2)
        assert np.all(r.landmarks % 1 == 0.5)  # not rounded to whole pixels
        assert r.image_path == b.image_path("train", r.case_id)
        assert r.split == "train" and r.spacing_mm == 0.1
        assert r.extra["machine"] == "ART Plus" and r.extra["annotators"] == ("senior", "junior")
    assert [r.cvm_stage for r in records] == [5, 2]
    # the shuffled file order did not leak into the result
    assert [lm["symbol"] for lm in docs["cka"]["senior"]["landmarks"]] != list(AARIZ_LANDMARKS)


def test_one_annotator_is_used_alone(tmp_path):
    b = AarizBuilder(tmp_path)
    only_senior = b.add_case("s1", junior=None)["senior"]
    only_junior = b.add_case("j1", senior=None)["junior"]
    records, issues = read_aariz(tmp_path, "train")
    assert issues == []
    by_id = {r.case_id: r for r in records}
    np.testing.assert_array_equal(by_id["s1"].landmarks, annotation_points(only_senior, AARIZ_LANDMARKS))
    np.testing.assert_array_equal(by_id["j1"].landmarks, annotation_points(only_junior, AARIZ_LANDMARKS))
    assert by_id["s1"].extra["annotators"] == ("senior",)


def test_folders_are_matched_ignoring_case(tmp_path):
    b = AarizBuilder(tmp_path, split_folders={"train": "Train", "valid": "VALID"})
    b.add_case("t1", "train")
    b.add_case("v1", "valid")
    annotations = b.split_dir("valid") / "Annotations"
    (annotations / "Cephalometric Landmarks" / "Senior Orthodontists").rename(
        annotations / "Cephalometric Landmarks" / "senior orthodontists")
    (annotations / "Cephalometric Landmarks").rename(annotations / "cephalometric landmarks")
    (annotations / "CVM Stages").rename(annotations / "cvm stages")
    (b.split_dir("valid") / "Cephalograms").rename(b.split_dir("valid") / "CEPHALOGRAMS")
    (tmp_path / "cephalogram_machine_mappings.csv").rename(tmp_path / "Cephalogram_Machine_Mappings.CSV")

    train, issues = read_aariz(tmp_path, "train")
    assert issues == [] and [r.case_id for r in train] == ["t1"]
    valid, issues = read_aariz(tmp_path, "valid")
    assert issues == [] and [r.case_id for r in valid] == ["v1"]
    assert valid[0].split == "valid" and valid[0].cvm_stage == 3
    assert valid[0].extra["annotators"] == ("senior", "junior")


def test_mixed_image_extensions(tmp_path):
    b = AarizBuilder(tmp_path)
    exts = {"c1": ".png", "c2": ".jpg", "c3": ".JPEG", "c4": ".bmp", "c5": ".Png"}
    for cid, ext in exts.items():
        b.add_case(cid, "test", ext=ext)
    records, issues = read_aariz(tmp_path, "test")
    assert issues == []
    assert {r.case_id: r.image_path.name for r in records} == {cid: cid + ext for cid, ext in exts.items()}


def test_spacing_and_machine_per_image(tmp_path):
    b = AarizBuilder(tmp_path)
    b.add_case("h", machine="Hyperion X5", pixel_size="0.089")
    b.add_case("v", machine="Veraviewepocs 2D", pixel_size="0.144")
    b.add_case("other_split", "valid", machine="Smart3D", pixel_size="0.1")
    records, issues = read_aariz(tmp_path, "train")
    assert issues == []
    assert {r.case_id: (r.spacing_mm, r.extra["machine"]) for r in records} == {
        "h": (0.089, "Hyperion X5"), "v": (0.144, "Veraviewepocs 2D")}


def test_cvm_stage_read_missing_and_invalid(tmp_path):
    b = AarizBuilder(tmp_path)
    for stage in range(1, 7):
        b.add_case(f"s{stage}", cvm=stage)
    b.add_case("none", cvm=None)
    for cid, bad in (("zero", 0), ("seven", 7), ("text", "3"), ("flag", True), ("frac", 2.5)):
        b.add_case(cid, cvm=bad)
    b.add_case("broken")
    b.cvm_path("train", "broken").write_text("{not json", encoding="utf-8")
    b.add_case("nokey")
    b.cvm_path("train", "nokey").write_text(json.dumps({"stage": 3}), encoding="utf-8")

    records, issues = read_aariz(tmp_path, "train")
    stages = {r.case_id: r.cvm_stage for r in records}
    assert stages == {"none": None, **{f"s{s}": s for s in range(1, 7)}}
    for cid in ("zero", "seven", "text", "flag", "frac", "broken", "nokey"):
        assert issues_for(issues, b.cvm_path("train", cid)), cid
    assert "invalid JSON" in issues_for(issues, b.cvm_path("train", "broken"))[0]
    assert len(issues) == 7


def test_every_bad_input_is_reported_and_good_records_still_come_back(tmp_path):
    b = AarizBuilder(tmp_path)
    b.add_case("good1")
    b.add_case("good2", ext=".jpg")

    def edited(cid, edit):
        doc = aariz_annotation(cid)
        edit(doc["landmarks"])
        return doc

    b.add_case("unknown", senior=edited("unknown", lambda lms: lms[0].update(symbol="Xx")))
    b.add_case("dup", junior=edited("dup", lambda lms: lms.append(dict(lms[0]))))
    b.add_case("missing", senior=edited("missing", lambda lms: lms.pop()))
    b.add_case("nan", senior=edited("nan", lambda lms: lms[3]["value"].update(x=float("nan"))))
    b.add_case("neg", senior=edited("neg", lambda lms: lms[3]["value"].update(y=-5)))
    b.add_case("text", junior=edited("text", lambda lms: lms[2]["value"].update(x="12")))
    b.add_case("novalue", junior=edited("novalue", lambda lms: lms[2].pop("value")))
    b.add_case("noy", junior=edited("noy", lambda lms: lms[2]["value"].pop("y")))
    b.add_case("invalid", senior='{"landmarks": [')
    b.add_case("empty", senior="")
    b.add_case("structure", senior=json.dumps([1, 2, 3]))
    b.add_case("nolandmarks", junior=json.dumps({"ceph_id": "nolandmarks"}))
    b.add_case("noann", senior=None, junior=None)
    b.add_case("noimage", image=False)
    b.add_case("nospacing", pixel_size=None)
    b.add_case("badspacing", pixel_size="abc")
    b.add_case("zerospacing", pixel_size="0")
    b.add_case("twoimages")
    b.add_case("twoimages", ext=".bmp", pixel_size=None)

    records, issues = read_aariz(tmp_path, "train")
    assert sorted(r.case_id for r in records) == ["good1", "good2"]

    senior = lambda cid: b.annotation_path("train", cid, "Senior")  # noqa: E731
    junior = lambda cid: b.annotation_path("train", cid, "Junior")  # noqa: E731
    csv_path = tmp_path / "cephalogram_machine_mappings.csv"
    expected = {
        senior("unknown"): ["unknown landmark symbol(s): 'Xx'", "wrong count: 28"],
        junior("dup"): ["duplicate landmark symbol(s)"],
        senior("missing"): ["wrong count: 28 of the 29", "missing: "],
        senior("nan"): ["non-finite"],
        senior("neg"): ["negative"],
        junior("text"): ["'x' is '12', not a number"],
        junior("novalue"): ["no 'value'"],
        junior("noy"): ["no 'y'"],
        senior("invalid"): ["invalid JSON"],
        senior("empty"): ["empty"],
        senior("structure"): ["wrong structure"],
        junior("nolandmarks"): ["wrong structure"],
        b.image_path("train", "noann"): ["image without annotation"],
        senior("noimage"): ["annotation without an image"],
        junior("noimage"): ["annotation without an image"],
        b.image_path("train", "nospacing"): ["no row for cephalogram_id 'nospacing'"],
        b.image_path("train", "twoimages", ".bmp"): ["2 images with the same id"],
    }
    for path, fragments in expected.items():
        problems = " | ".join(issues_for(issues, path))
        for fragment in fragments:
            assert fragment in problems, (path, fragment, problems)
    csv_problems = " | ".join(issues_for(issues, csv_path))
    assert "'badspacing'" in csv_problems and "'zerospacing'" in csv_problems
    # the missing symbol is named
    dropped = next(lm["symbol"] for lm in aariz_annotation("missing")["landmarks"][-1:])
    assert dropped in " ".join(issues_for(issues, senior("missing")))
    assert len(issues) == len(expected) + 2 + 1  # + 2 spacing rows + the unknown symbol's "wrong count"


def test_symbol_spelled_with_an_apostrophe_is_accepted(tmp_path):
    b = AarizBuilder(tmp_path)
    doc = aariz_annotation("prime")
    for lm in doc["landmarks"]:
        lm["symbol"] = {"Pog`": "Pog'", "N`": "N\u2019"}.get(lm["symbol"], lm["symbol"])
    b.add_case("prime", senior=doc, junior=None)
    records, issues = read_aariz(tmp_path, "train")
    assert issues == []
    np.testing.assert_array_equal(records[0].landmarks, annotation_points(aariz_annotation("prime"), AARIZ_LANDMARKS))


def test_conflicting_rows_in_mapping_csv(tmp_path):
    b = AarizBuilder(tmp_path)
    b.add_case("twice", pixel_size="0.1")
    b.rows.append(["twice", "ART Plus", "0.2", "PNG", "L"])
    b.rows.append(["twice", "ART Plus", "0.1", "PNG", "L"])
    b.write_mapping()
    records, issues = read_aariz(tmp_path, "train")
    assert records == [] and "more than once" in issues[0].problem


def test_fatal_layout_errors_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as e:
        read_aariz(tmp_path / "nowhere", "train")
    assert "nowhere" in str(e.value) and "Cephalograms" in str(e.value)

    b = AarizBuilder(tmp_path)
    b.add_case("c1")
    with pytest.raises(ValueError, match="unknown Aariz split 'validation'.*train, valid, test"):
        read_aariz(tmp_path, "validation")
    with pytest.raises(FileNotFoundError, match="split folder not found") as e:
        read_aariz(tmp_path, "test")
    assert str(tmp_path / "test") in str(e.value) and "folders there: train" in str(e.value)

    with pytest.raises(FileNotFoundError, match="give its parent folder"):
        read_aariz(b.split_dir("train"), "train")

    (tmp_path / "cephalogram_machine_mappings.csv").write_text("id,size\nc1,0.1\n")
    with pytest.raises(ValueError, match="missing column.*cephalogram_id.*pixel_size"):
        read_aariz(tmp_path, "train")
    (tmp_path / "cephalogram_machine_mappings.csv").unlink()
    with pytest.raises(FileNotFoundError, match="cephalogram_machine_mappings.csv: not found.*pixel spacing"):
        read_aariz(tmp_path, "train")

    b.write_mapping()
    (b.split_dir("train") / "Cephalograms").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="Cephalograms: folder not found"):
        read_aariz(tmp_path, "train")


def test_looks_like_aariz(tmp_path):
    assert not looks_like_aariz(tmp_path / "nowhere")
    assert not looks_like_aariz(tmp_path)
    (tmp_path / "RawImage").mkdir()
    (tmp_path / "AnnotationsByMD").mkdir()
    assert not looks_like_aariz(tmp_path)

    with_csv = tmp_path / "a"
    AarizBuilder(with_csv)
    assert looks_like_aariz(with_csv)

    without_csv = tmp_path / "b"
    AarizBuilder(without_csv, split_folders={"valid": "Valid"}).add_case("c1", "valid")
    (without_csv / "cephalogram_machine_mappings.csv").unlink()
    assert looks_like_aariz(without_csv)


def test_reader_does_not_decode_images(tmp_path):
    b = AarizBuilder(tmp_path)
    b.add_case("c1")
    b.image_path("train", "c1").write_bytes(b"not an image")  # checked later, by the cache step
    records, issues = read_aariz(tmp_path, "train")
    assert issues == [] and len(records) == 1
    assert math.isclose(records[0].spacing_mm, 0.1)


def test_all_problems_of_one_file_are_listed(tmp_path):
    b = AarizBuilder(tmp_path)
    doc = aariz_annotation("many")
    lms = doc["landmarks"]
    lms[0]["symbol"], lost = "Q", lms[0]["symbol"]
    lms[1]["value"]["x"] = float("inf")
    lms[2]["value"] = {"x": 3}
    lms.append(dict(lms[3]))
    b.add_case("many", senior=doc)
    records, issues = read_aariz(tmp_path, "train")
    text = " | ".join(issues_for(issues, b.annotation_path("train", "many")))
    assert records == []
    for fragment in ("unknown landmark symbol(s): 'Q'", f"missing: {lost}", "no 'y'", "duplicate",
                     f"non-finite coordinates for {lms[1]['symbol']}"):
        assert fragment in text, (fragment, text)
