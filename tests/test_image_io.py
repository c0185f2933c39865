import cv2
import numpy as np
import pytest

from cephalo.image_io import ImageReadError, read_grey, to_grey_uint8, write_image


def test_reads_colour_16bit_and_unicode_paths(tmp_path):
    grey = (np.arange(60 * 40) % 256).astype(np.uint8).reshape(60, 40)
    folder = tmp_path / "سفالومتری é"
    folder.mkdir()
    write_image(folder / "grey.png", grey)
    write_image(folder / "colour.jpg", cv2.merge([grey, grey, grey]))
    write_image(folder / "alpha.png", cv2.merge([grey, grey, grey, np.full_like(grey, 255)]))
    deep = (grey.astype(np.uint16) * 16)  # a 12-bit X-ray stored in 16 bits
    write_image(folder / "deep.png", deep)

    np.testing.assert_array_equal(read_grey(folder / "grey.png"), grey)
    assert np.abs(read_grey(folder / "colour.jpg").astype(int) - grey).max() <= 3  # JPEG loss only
    np.testing.assert_array_equal(read_grey(folder / "alpha.png"), grey)
    stretched = read_grey(folder / "deep.png")
    assert stretched.dtype == np.uint8 and stretched.max() == 255 and stretched.min() == 0


def test_flat_deep_image_is_black():
    assert to_grey_uint8(np.full((4, 4), 1000, np.uint16)).max() == 0


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    good = cv2.imencode(".png", np.zeros((50, 50), np.uint8))[1].tobytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    for name, message in [("empty.png", "empty"), ("junk.jpg", "not a readable image"),
                          ("truncated.png", "not a readable image"), ("missing.png", "not found")]:
        with pytest.raises(ImageReadError, match=message) as e:
            read_grey(tmp_path / name)
        assert name in str(e.value)
