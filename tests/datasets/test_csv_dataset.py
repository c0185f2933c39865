import numpy as np
import pytest

from cephalo.datasets.csv_dataset import CsvLayoutError, read_csv_dataset, write_landmarks_csv
from cephalo.datasets.issues import DatasetError, resolve_issues
from tests.helpers import write_csv_dataset


def test_reads_rows_in_order_with_names(tmp_path):
    csv_path, points = write_csv_dataset(tmp_path, n=5)
    records, issues = read_csv_dataset(csv_path, "all")
    assert issues == []
    assert [r.case_id for r in records] == [f"images/{i:03d}.png" for i in range(5)]
    assert records[0].landmark_names == ("S", "N", "Me")
    np.testing.assert_allclose(np.stack([r.landmarks for r in records]), points)
    assert all(r.spacing_mm == 0.1 and r.image_path.is_file() for r in records)


def test_seeded_split_is_disjoint_stable_and_seed_dependent(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path, n=20)
    def ids(split, seed=0):
        return {r.case_id for r in read_csv_dataset(csv_path, split, val_fraction=0.25, test_fraction=0.25, seed=seed)[0]}
    train, valid, test = ids("train"), ids("valid"), ids("test")
    assert len(train) == 10 and len(valid) == 5 and len(test) == 5
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert ids("valid") == valid  # same seed, same split
    assert ids("valid", seed=1) != valid


def test_split_column_wins(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path, n=6, split_column=True)
    records, _ = read_csv_dataset(csv_path, "valid")
    assert [r.case_id for r in records] == ["images/001.png", "images/004.png"]


def test_every_bad_row_is_reported_and_good_rows_kept(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path, n=6)
    lines = csv_path.read_text().splitlines()
    lines[1] = lines[1].replace("images/000.png", "images/nope.png")          # missing image
    cells = lines[2].split(","); cells[1] = ""; lines[2] = ",".join(cells)      # missing spacing
    cells = lines[3].split(","); cells[2] = "nan"; lines[3] = ",".join(cells)   # non-finite
    cells = lines[4].split(","); cells[3] = "abc"; lines[4] = ",".join(cells)   # not a number
    lines[5] = lines[5] + ",1"                                                   # wrong number of values
    csv_path.write_text("\n".join(lines) + "\n")
    records, issues = read_csv_dataset(csv_path, "all")
    assert [r.case_id for r in records] == ["images/005.png"]
    text = "\n".join(map(str, issues))
    for expected in ["image file not found", "missing pixel spacing", "non-finite coordinates for S",
                     "S_y = 'abc' is not a number", "values for"]:
        assert expected in text
    with pytest.raises(DatasetError) as e:
        resolve_issues(issues, "error")
    assert "5 problem(s)" in str(e.value) and "--skip_bad" in str(e.value)
    with pytest.warns(UserWarning, match="skipping 5"):
        resolve_issues(issues, "skip")


@pytest.mark.parametrize("header, message", [
    ("image,S_x,S_y", "missing column"),
    ("image,spacing_mm,S_x,N_y", "pairs"),
    ("image,spacing_mm,S_x,S_y,N_x", "no partner"),
    ("image,spacing_mm", "none found"),
])
def test_bad_headers(tmp_path, header, message):
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n")
    with pytest.raises(CsvLayoutError, match=message) as e:
        read_csv_dataset(path)
    assert "bad.csv" in str(e.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("image,spacing_mm,S_x,S_y\nimages/caf\xe9.png,0.1,1,2\n".encode("latin-1"))
    with pytest.raises(CsvLayoutError, match="UTF-8"):
        read_csv_dataset(path)


def test_write_then_read_round_trip(tmp_path):
    csv_path, points = write_csv_dataset(tmp_path, n=3)
    out = tmp_path / "copy.csv"
    write_landmarks_csv(out, [f"images/{i:03d}.png" for i in range(3)], points, [0.1] * 3, ("S", "N", "Me"))
    records, issues = read_csv_dataset(out)
    assert not issues
    np.testing.assert_allclose(np.stack([r.landmarks for r in records]), points, atol=1e-3)


def test_write_unknown_spacing_as_an_empty_cell(tmp_path):
    out = tmp_path / "preds.csv"
    points = np.arange(18, dtype=np.float64).reshape(3, 3, 2)
    write_landmarks_csv(out, ["a.png", "b.png", "c.png"], list(points), [0.1, None, float("nan")], ("S", "N", "Me"))
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0][:3] == ["image", "spacing_mm", "S_x"]
    assert [r[1] for r in rows[1:]] == ["0.1", "", ""]
    assert rows[2][2:] == [f"{v:.3f}" for v in points[1].reshape(-1)]
    _, issues = read_csv_dataset(out)  # read back as a dataset, an empty spacing is reported, not guessed
    assert sum("missing pixel spacing" in str(i) for i in issues) == 2


@pytest.mark.parametrize("option", ["fold", "test_fold"])
def test_more_folds_than_images_is_an_error_naming_the_option(option, tmp_path):
    """7 folds of 6 images would leave one empty (or train on a fold that holds nothing): refused, naming the flag
    and the most folds the data allow; 6 folds of 6 (leave-one-out) are fine."""
    from cephalo.datasets.sources import DatasetSpec, collect_records

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6)
    with pytest.raises(ValueError, match=rf"--{option} 1/7: .* has 6 usable images, too few for 7 folds; use at "
                                         "most 6 folds"):
        collect_records(DatasetSpec(str(csv_path), **{option: (1, 7)}), "train")
    records, _ = collect_records(DatasetSpec(str(csv_path), **{option: (6, 6)}), "train")
    assert len(records) == (5 if option == "fold" else 4)  # test_fold: a 20 % validation of the other 5
