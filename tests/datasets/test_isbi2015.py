import numpy as np
import pytest

from cephalo.datasets.isbi2015 import (
    ISBI2015_LANDMARKS,
    ISBI2015_SPACING_MM,
    ISBI2015_SPLITS,
    looks_like_isbi2015,
    read_isbi2015,
)
from tests.fixtures_datasets import ISBI_CLASS_LABELS, IsbiBuilder, isbi_annotation_text, isbi_points


def issues_for(issues, path):
    return [i.problem for i in issues if str(i.path) == str(path)]


def test_constants():
    assert ISBI2015_LANDMARKS == ("S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go", "LIT", "UIT", "UL", "LL",
                                  "Sn", "PogS", "PNS", "ANS", "Ar")
    assert ISBI2015_SPLITS == ("train", "test1", "test2") and ISBI2015_SPACING_MM == 0.1


def test_mean_of_senior_and_junior_per_split(tmp_path):
    b = IsbiBuilder(tmp_path)
    for cid, split in (("001", "train"), ("002", "train"), ("151", "test1"), ("301", "test2")):
        b.add_case(cid, split)
    records, issues = read_isbi2015(tmp_path, "train")
    assert issues == [] and [r.case_id for r in records] == ["001", "002"]
    for r in records:
        expected = (isbi_points(r.case_id) + isbi_points(r.case_id, junior=True)) / 2
        assert r.landmarks.dtype == np.float64
        np.testing.assert_array_equal(r.landmarks, expected)
        assert np.all(r.landmarks % 1 == 0.5)
        assert r.landmark_names == ISBI2015_LANDMARKS and r.spacing_mm == 0.1 and r.split == "train"
        assert r.image_path == b.image_path("train", r.case_id) and r.cvm_stage is None
        assert r.extra["annotators"] == ("senior", "junior")
    for split, cid in (("test1", "151"), ("test2", "301")):
        records, issues = read_isbi2015(tmp_path, split)
        assert issues == [] and [(r.case_id, r.split) for r in records] == [(cid, split)]


def test_one_annotator_line_endings_and_spaces(tmp_path):
    b = IsbiBuilder(tmp_path)
    b.add_case("001", junior=None)
    b.add_case("002", senior=None, junior=isbi_annotation_text(isbi_points("002"), newline="\n", spaces=True))
    b.add_case("003", senior="\n" + isbi_annotation_text(isbi_points("003"), newline="\r\n").replace(",", ", "),
               junior=None)
    records, issues = read_isbi2015(tmp_path, "train")
    assert issues == []
    for r in records:
        np.testing.assert_array_equal(r.landmarks, isbi_points(r.case_id))
    assert [r.extra["annotators"] for r in records] == [("senior",), ("junior",), ("senior",)]


def test_bad_inputs_are_all_reported(tmp_path):
    b = IsbiBuilder(tmp_path)
    b.add_case("001")
    b.add_case("002", ext=".BMP")
    lines = isbi_annotation_text(isbi_points("010")).splitlines()
    b.add_case("010", senior="\n".join(lines[:18]))  # 18 landmark lines, no labels
    b.add_case("011", junior="\n".join(lines[:18] + ISBI_CLASS_LABELS))  # a label read as the 19th point
    b.add_case("012", senior="\n".join(lines[:4] + ["abc,12"] + lines[5:]))
    b.add_case("013", junior="\n".join(lines[:2] + ["1;2;3"] + lines[3:]))
    b.add_case("014", senior="\n".join(["nan,4"] + lines[1:]))
    b.add_case("015", senior="\n".join(["-7,4"] + lines[1:]))
    b.add_case("016", senior=None, junior=None)
    b.add_case("017", senior="")
    b.add_case("018")
    b.add_case("018", ext=".png")
    b.add_case("019", image=False)  # annotations of other splits are ignored, not reported

    records, issues = read_isbi2015(tmp_path, "train")
    assert [r.case_id for r in records] == ["001", "002"]
    senior, junior = (lambda c: b.annotation_path(c, "senior")), (lambda c: b.annotation_path(c, "junior"))
    expected = {
        senior("010"): "only 18 non-blank line(s), expected 19",
        junior("011"): "line 19 (Ar): '1'",
        senior("012"): "line 5 (A): 'abc,12'",
        junior("013"): "line 3 (Or): '1;2;3'",
        senior("014"): "non-finite coordinates for S",
        senior("015"): "negative) for S",
        b.image_path("train", "016"): "image without annotation",
        senior("017"): "only 0 non-blank line(s)",
        b.image_path("train", "018"): "2 images with the same number '018'",
    }
    for path, fragment in expected.items():
        problems = " | ".join(issues_for(issues, path))
        assert fragment in problems, (path, fragment, problems)
    assert len(issues) == len(expected)


def test_fatal_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: ISBI 2015 dataset folder not found.*RawImage"):
        read_isbi2015(tmp_path / "nowhere", "train")
    b = IsbiBuilder(tmp_path)
    with pytest.raises(ValueError, match="unknown ISBI 2015 split 'test'.*test1 \\(Test1Data\\)"):
        read_isbi2015(tmp_path, "test")
    (tmp_path / "RawImage" / "Test2Data").rmdir()
    with pytest.raises(FileNotFoundError, match="Test2Data: folder not found.*folders in .*RawImage: Test1Data, TrainingData"):
        read_isbi2015(tmp_path, "test2")
    for who in ("senior", "junior"):
        (tmp_path / "AnnotationsByMD" / f"400_{who}").rmdir()
    with pytest.raises(FileNotFoundError, match="neither '400_senior' nor '400_junior'"):
        read_isbi2015(tmp_path, "train")
    (tmp_path / "AnnotationsByMD").rmdir()
    with pytest.raises(FileNotFoundError, match="AnnotationsByMD: folder not found"):
        read_isbi2015(tmp_path, "train")
    assert b.root == tmp_path


def test_looks_like_isbi2015(tmp_path):
    assert not looks_like_isbi2015(tmp_path / "nowhere")
    assert not looks_like_isbi2015(tmp_path)
    IsbiBuilder(tmp_path)
    assert looks_like_isbi2015(tmp_path)
    (tmp_path / "RawImage").rename(tmp_path / "rawimage")
    assert looks_like_isbi2015(tmp_path)
    assert read_isbi2015(tmp_path, "train") == ([], [])
