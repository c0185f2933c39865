"""One source of truth for the data options: every command reads a dataset and its splits the same way, prepare
caches what train reads, and a held-out CSV test split is never trained on."""

from __future__ import annotations

import dataclasses

import pytest

from cephalo.cli.main import build_parser, main
from cephalo.datasets.sources import load_records
from cephalo.engine.config import TrainConfig, parse_args
from cephalo.engine.step.data import build_datasets
from cephalo.flags import option_fields
from cephalo.preprocessing.cache import LetterboxCache
from cephalo.preprocessing.options import DataOptions
from tests.helpers import write_csv_dataset


def test_prepare_then_train_with_defaults_reuse_one_cache(tmp_path, monkeypatch):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6, size=(80, 60))
    assert main(["prepare", "--dataset_path", str(csv_path)]) == 0
    config = parse_args(["--dataset_path", str(csv_path), "--no_progress"])
    folder = config.letterbox_cache().folder
    assert folder.name == "256x256" and len(list(folder.glob("*.npy"))) == 6  # what prepare wrote

    def no_decoding(self, source):
        raise AssertionError(f"training decoded {source} again instead of reading the cache")

    monkeypatch.setattr(LetterboxCache, "_build", no_decoding)
    train_set, val_set, _ = build_datasets(config)
    assert len(train_set) + len(val_set) == 6
    assert [p.name for p in folder.parent.iterdir() if p.is_dir()] == ["256x256"]  # one size, the one train reads


def test_a_csv_test_split_is_never_trained_on(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=20, size=(80, 60))
    flags = ["--dataset_path", str(csv_path), "--seed", "3", "--val_fraction", "0.2", "--test_fraction", "0.25"]
    config = parse_args([*flags, "--no_progress"])
    train_set, val_set, _ = build_datasets(config)
    trained = {r.case_id for r in train_set.records} | {r.case_id for r in val_set.records}
    # what `cephalo evaluate --split test` (and predict, baseline) read with the same flags
    (tmp_path / "p.csv").write_text("image,spacing_mm,S_x,S_y\n")
    args = build_parser().parse_args(["evaluate", *flags, "--split", "test", "--predictions", str(tmp_path / "p.csv")])
    from cephalo.cli.common import data_options

    test = {r.case_id for r in load_records(data_options(args).dataset_spec(), "test")}
    assert len(test) == 5 and len(trained) == 15 and not test & trained


def test_every_command_offers_the_data_options_with_the_same_defaults():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    for name in ("prepare", "baseline", "evaluate"):
        defaults = {a.dest: a.default for a in subcommands[name]._actions}
        for f in option_fields(DataOptions):
            if f.name == "image_size" and name == "evaluate":
                continue  # evaluate reads originals, it caches nothing
            if f.name == "dataset_path" and name == "evaluate":
                assert defaults[f.name] is None  # never scored against the synthetic set unasked
                continue
            assert f.name in defaults, (name, f.name)
            assert defaults[f.name] == f.default, (name, f.name)
    train = TrainConfig()
    assert all(getattr(train, f.name) == f.default for f in option_fields(DataOptions))
    assert DataOptions().image_size == TrainConfig().image_size == (256, 256)


@pytest.mark.parametrize("flag", ["--seed", "--val_fraction", "--test_fraction"])
def test_predict_reads_dataset_splits_with_the_same_options(flag, tmp_path):
    (tmp_path / "x.pt").write_bytes(b"")
    args = build_parser().parse_args(["predict", "--checkpoint", str(tmp_path / "x.pt"), "in", "--out", "o"])
    assert hasattr(args, flag[2:]), f"cephalo predict has no {flag}"
    assert getattr(args, flag[2:]) == dataclasses.fields(DataOptions)[
        [f.name for f in dataclasses.fields(DataOptions)].index(flag[2:])].default


def _splits_as_read(flags: list[str]) -> tuple[set, set, str, object]:
    """What ``cephalo train`` trains and validates on with ``flags`` (its case ids and its note), and a reader of
    any split as ``cephalo evaluate`` reads it with the same flags."""
    from cephalo.cli.common import data_options

    train_set, val_set, note = build_datasets(parse_args([*flags, "--no_progress"]))
    args = build_parser().parse_args(["evaluate", *flags, "--predictions", flags[1]])  # any existing CSV parses
    spec = data_options(args).dataset_spec()
    return ({r.case_id for r in train_set.records}, {r.case_id for r in val_set.records}, note,
            lambda split: {r.case_id for r in load_records(spec, split)})


def test_folds_cover_the_training_split_once_and_every_command_reads_the_same_fold(tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=23, size=(80, 60))
    seen = []
    for k in range(1, 6):
        trained, validated, note, read = _splits_as_read(
            ["--dataset_path", str(csv_path), "--fold", f"{k}/5", "--seed", "4", "--test_fraction", "0.2"])
        assert not validated & trained and f"fold {k}/5" in note and read("valid") == validated
        test = read("test")
        assert len(test) == 5 and not test & (validated | trained)  # held out
        seen += sorted(validated)
    assert len(seen) == len(set(seen)) == 18  # the 18 non-test rows, each validated exactly once
    with pytest.raises(ValueError, match="--fold and --val_split"):
        build_datasets(parse_args(["--dataset_path", str(csv_path), "--fold", "1/5", "--val_split", "test"]))


def test_a_test_fold_is_held_out_from_training_and_validation_and_every_command_reads_it(tmp_path):
    """Nested cross-validation: fold k is 'test', validation a seeded --val_fraction of the other folds."""
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=23, size=(80, 60))
    tested = []
    for k in range(1, 6):
        trained, validated, note, read = _splits_as_read(
            ["--dataset_path", str(csv_path), "--test_fold", f"{k}/5", "--seed", "4", "--val_fraction", "0.25"])
        test = read("test")
        assert f"test fold {k}/5" in note and read("valid") == validated and read("train") == trained
        assert not test & (trained | validated) and not trained & validated
        assert len(trained | validated | test) == 23 and len(validated) == round(0.25 * (23 - len(test)))
        tested += sorted(test)
    assert len(tested) == len(set(tested)) == 23  # every row tested exactly once


@pytest.mark.parametrize("flags, message", [
    (["--fold", "1/5", "--test_fold", "2/5"], "--fold and --test_fold both hold out a fold"),
    (["--test_fold", "1/5", "--test_fraction", "0.2"], "--test_fold and --test_fraction"),
    (["--test_fold", "1/5", "--val_split", "test"], "--test_fold and --val_split"),
])
def test_a_test_fold_with_another_held_out_split_is_an_error(flags, message, tmp_path):
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(80, 60))
    with pytest.raises(ValueError, match=message):
        build_datasets(parse_args(["--dataset_path", str(csv_path), *flags, "--no_progress"]))
