"""A corpus of broken (and unusual but valid) inputs, each run through `cephalo prepare` as a user would.

Every broken case must end in a clear error that names the file (exit code 2, no traceback); every valid case
must be read. The count of cases is asserted so that the corpus only grows.
"""

import json
import os

import cv2
import numpy as np
import pytest

from cephalo.cli.main import main
from tests.fixtures_datasets import AarizBuilder, IsbiBuilder, aariz_annotation
from tests.helpers import write_csv_dataset

BROKEN, VALID = [], []


def broken(expect):
    def register(build):
        BROKEN.append(pytest.param(build, expect, id=build.__name__))
        return build
    return register


def valid(build):
    VALID.append(pytest.param(build, id=build.__name__))
    return build


def encoded(ext, image):
    return cv2.imencode(ext, image)[1].tobytes()


def csv_dataset(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=3, size=(80, 60))
    return csv_path, tmp_path / "data" / "images" / "001.png"


def replace_image(tmp_path, name, data):
    """The CSV dataset with image 001 replaced by ``name`` holding ``data``; returns (dataset, bad file)."""
    csv_path, old = csv_dataset(tmp_path)
    new = old.with_name(name)
    old.unlink()
    new.write_bytes(data)
    csv_path.write_text(csv_path.read_text().replace("images/001.png", f"images/{name}"), encoding="utf-8")
    return csv_path, new


GREY = (np.arange(80 * 60) % 251).astype(np.uint8).reshape(80, 60)


# ------------------------------------------------------------------ images
@broken("empty")
def zero_byte_png(tmp_path):
    return replace_image(tmp_path, "001.png", b"")


@broken("not a readable image")
def truncated_png(tmp_path):
    data = encoded(".png", GREY)
    return replace_image(tmp_path, "001.png", data[: len(data) // 2])


@broken("truncated JPEG")
def truncated_jpeg(tmp_path):
    data = encoded(".jpg", GREY)
    return replace_image(tmp_path, "001.jpg", data[: len(data) * 2 // 3])


@broken("truncated BMP")
def truncated_bmp(tmp_path):
    data = encoded(".bmp", GREY)
    return replace_image(tmp_path, "001.bmp", data[: len(data) - 500])


@broken("not a readable image")
def text_file_named_png(tmp_path):
    return replace_image(tmp_path, "001.png", b"this is not an image\n" * 10)


@broken("not a readable image")
def html_error_page_saved_as_jpg(tmp_path):
    return replace_image(tmp_path, "001.jpg", b"<html><body>404 Not Found</body></html>")


@broken("image file not found")
def missing_image(tmp_path):
    csv_path, image = csv_dataset(tmp_path)
    image.unlink()
    return csv_path, image


@valid
def sixteen_bit_png(tmp_path):
    return replace_image(tmp_path, "001.png", encoded(".png", GREY.astype(np.uint16) * 16))


@valid
def colour_jpeg(tmp_path):
    return replace_image(tmp_path, "001.jpg", encoded(".jpg", cv2.merge([GREY, GREY, GREY])))


@valid
def rgba_png(tmp_path):
    return replace_image(tmp_path, "001.png", encoded(".png", cv2.merge([GREY, GREY, GREY, GREY])))


@valid
def sixteen_bit_tiff(tmp_path):
    return replace_image(tmp_path, "001.tiff", encoded(".tiff", GREY.astype(np.uint16) * 257))


@valid
def float_tiff(tmp_path):
    return replace_image(tmp_path, "001.tif", encoded(".tif", GREY.astype(np.float32) / 255))


@valid
def grey_bmp_uppercase_extension(tmp_path):
    return replace_image(tmp_path, "001.BMP", encoded(".bmp", GREY))


@valid
def non_ascii_folder(tmp_path):
    folder = tmp_path / "سفالومتری é"
    csv_path, _ = write_csv_dataset(folder, n=3, size=(80, 60))
    return csv_path, None


# ------------------------------------------------------------------ CSV tables
def csv_with(tmp_path, edit):
    csv_path, _ = csv_dataset(tmp_path)
    lines = csv_path.read_text().splitlines()
    edit(lines)
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, csv_path


@broken("missing column")
def csv_without_spacing_column(tmp_path):
    return csv_with(tmp_path, lambda lines: lines.__setitem__(0, lines[0].replace("spacing_mm", "spacing")))


@broken("pairs")
def csv_with_unpaired_columns(tmp_path):
    return csv_with(tmp_path, lambda lines: lines.__setitem__(0, lines[0].replace("N_y", "Q_y")))


@broken("is not a number")
def csv_with_text_coordinate(tmp_path):
    def edit(lines):
        cells = lines[2].split(",")
        cells[3] = "twelve"
        lines[2] = ",".join(cells)
    return csv_with(tmp_path, edit)


@broken("must be a positive number")
def csv_with_zero_spacing(tmp_path):
    return csv_with(tmp_path, lambda lines: lines.__setitem__(2, lines[2].replace(",0.1,", ",0,", 1)))


@broken("not UTF-8")
def csv_in_latin1(tmp_path):
    csv_path, _ = csv_dataset(tmp_path)
    csv_path.write_bytes(csv_path.read_text().replace("images/000.png", "images/caf\xe9.png").encode("latin-1"))
    return csv_path, csv_path


@broken("the file is empty")
def empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    return path, path


# ------------------------------------------------------------------ Aariz annotations
def aariz_with(tmp_path, senior):
    builder = AarizBuilder(tmp_path / "Aariz")
    builder.add_case("good1")
    builder.add_case("bad", senior=senior, junior=None)
    return builder.root, builder.annotation_path("train", "bad")


def aariz_doc(edit):
    doc = aariz_annotation("bad")
    edit(doc)
    return doc


@broken("wrong structure")
def aariz_without_landmarks_key(tmp_path):
    return aariz_with(tmp_path, {"ceph_id": "bad"})


@broken("no 'x' in 'value'")
def aariz_value_without_x(tmp_path):
    return aariz_with(tmp_path, aariz_doc(lambda d: d["landmarks"][0]["value"].pop("x")))


@broken("not a number")
def aariz_coordinate_as_string(tmp_path):
    return aariz_with(tmp_path, aariz_doc(lambda d: d["landmarks"][3]["value"].__setitem__("y", "17")))


@broken("non-finite")
def aariz_nan_coordinate(tmp_path):
    doc = aariz_doc(lambda d: d["landmarks"][5]["value"].__setitem__("x", float("nan")))
    return aariz_with(tmp_path, json.dumps(doc))  # Python writes NaN, which many tools emit


@broken("duplicate landmark symbol")
def aariz_duplicate_symbol(tmp_path):
    return aariz_with(tmp_path, aariz_doc(lambda d: d["landmarks"].append(dict(d["landmarks"][0]))))


@broken("unknown landmark symbol")
def aariz_unknown_symbol(tmp_path):
    return aariz_with(tmp_path, aariz_doc(lambda d: d["landmarks"][2].__setitem__("symbol", "Xx")))


@broken("invalid JSON")
def aariz_invalid_json(tmp_path):
    return aariz_with(tmp_path, '{"landmarks": [')


@broken("the file is empty")
def aariz_empty_json(tmp_path):
    return aariz_with(tmp_path, "")


@broken("wrong structure")
def aariz_json_list(tmp_path):
    return aariz_with(tmp_path, "[1, 2, 3]")


@broken("CVM stage")
def aariz_bad_cvm_stage(tmp_path):
    builder = AarizBuilder(tmp_path / "Aariz")
    builder.add_case("good1")
    builder.add_case("bad", cvm=9)
    return builder.root, builder.cvm_path("train", "bad")


@broken("image without annotation")
def aariz_image_without_annotation(tmp_path):
    builder = AarizBuilder(tmp_path / "Aariz")
    builder.add_case("good1")
    builder.add_case("bad", senior=None, junior=None)
    return builder.root, builder.image_path("train", "bad")


@broken("image without annotation")
def aariz_path_not_valid_utf8(tmp_path):
    if os.name == "nt":
        pytest.skip("Windows paths are always Unicode")
    builder = AarizBuilder(tmp_path / "Aariz")
    builder.add_case("good1")
    name = os.fsdecode(b"bad\xff")  # a byte that is not UTF-8, as from an old archive tool
    builder.add_case(name, senior=None, junior=None, pixel_size=None)  # (the mapping CSV is UTF-8)
    return builder.root, builder.image_path("train", name)


# ------------------------------------------------------------------ ISBI annotations
def isbi_with(tmp_path, text):
    builder = IsbiBuilder(tmp_path / "ISBI")
    builder.add_case("001")
    builder.add_case("002", senior=text, junior=None)
    return builder.root, builder.annotation_path("002")


@broken("19")
def isbi_too_few_lines(tmp_path):
    return isbi_with(tmp_path, "10,10\n" * 10)


@broken("002.txt")
def isbi_text_coordinates(tmp_path):
    return isbi_with(tmp_path, "10,10\n" * 5 + "ten,eleven\n" + "10,10\n" * 21)


def run_prepare(dataset, tmp_path, capsys):
    code = main(["prepare", "--dataset_path", str(dataset), "--image_size", "32", "32", "--splits",
                 *(["all"] if str(dataset).endswith(".csv") else ["train"]), "--cache_dir", str(tmp_path / "cache")])
    return code, capsys.readouterr()


@pytest.mark.parametrize("build, expect", BROKEN)
def test_broken_input_gives_a_clear_error_naming_the_file(build, expect, tmp_path, capsys):
    dataset, bad_file = build(tmp_path)
    code, out = run_prepare(dataset, tmp_path, capsys)
    assert code == 2, out.out
    err = out.err
    assert "\nerror: " in "\n" + err and "Traceback" not in err
    assert expect in err, err
    named = os.fsdecode(bad_file.name).encode("utf-8", "backslashreplace").decode("utf-8")
    assert named in err, f"{named!r} not named in: {err}"


@pytest.mark.parametrize("build", VALID)
def test_unusual_but_valid_input_is_read(build, tmp_path, capsys):
    dataset, _ = build(tmp_path)
    code, out = run_prepare(dataset, tmp_path, capsys)
    assert code == 0, out.err
    assert "3 images" in out.out


def test_corpus_size():
    assert len(BROKEN) >= 27 and len(VALID) >= 7, (len(BROKEN), len(VALID))
