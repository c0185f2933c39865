"""Every numeric and path flag of every command, given a bad value: one ``error:`` line naming the flag and what it
must be, exit code 2, no traceback. The flags are read from the parsers themselves, so a new numeric or path flag
without a row here fails :func:`test_every_numeric_and_path_flag_has_a_row`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cephalo import checks
from cephalo.cli.main import build_parser, main
from cephalo.engine.config import build_parser as build_train_parser
from cephalo.flags import Typed

PATH_CHECKS = {checks.existing_file, checks.existing_path, checks.dataset_location, checks.resume_source,
               checks.writable_folder, checks.writable_file}

# flag -> (bad value, words the error must hold); "{file}" is an existing file, "{folder}" an existing folder,
# "{missing}" a path that does not exist
ROWS = {
    "--seed": ("-1", "must be in [0, 4.29497e+09]"),
    "--val_fraction": ("1", "must be in [0, 1)"),
    "--test_fraction": ("-0.1", "must be in [0, 1)"),
    "--image_size": ("100", "must be a positive multiple of 32"),
    "--dataset_path": ("{missing}", "no such dataset folder or CSV file"),
    "--cache_dir": ("{file}", "is a file, not a folder"),
    "--pretrained": ("{missing}", "no such file"),
    "--head_stride": ("3", "invalid choice: 3"),
    "--sigma": ("0", "must be more than 0"),
    "--sigma_mm": ("-1", "must be more than 0"),
    "--batch_size": ("0", "must be at least 1"),
    "--gradient_accumulation_steps": ("0", "must be at least 1"),
    "--epochs": ("0", "must be at least 1"),
    "--lr": ("-0.001", "must be at least 0"),
    "--weight_decay": ("-1", "must be at least 0"),
    "--warmup_epochs": ("-1", "must be at least 0"),
    "--min_lr_ratio": ("2", "must be in [0, 1]"),
    "--ema_decay": ("1", "must be in [0, 1)"),
    "--num_workers": ("-1", "must be at least 0"),
    "--prefetch_factor": ("0", "must be at least 1"),
    "--vram_budget_gb": ("0", "must be more than 0"),
    "--patience": ("0", "must be at least 1"),
    "--min_delta": ("-0.5", "must be at least 0"),
    "--save_frequency": ("0", "must be at least 1"),
    "--val_every": ("0", "must be at least 1"),
    "--log_every": ("0", "must be at least 1"),
    "--max_updates": ("0", "must be at least 1"),
    "--max_bad_updates": ("0", "must be at least 1"),
    "--recovery_interval": ("-1", "must be at least 0"),
    "--recovery_minutes": ("0", "must be more than 0"),
    "--output_dir": ("{file}", "is a file, not a folder"),
    "--resume": ("{missing}", "no such checkpoint or run folder"),
    "--config": ("{missing}", "no such file"),
    "--checkpoint": ("{folder}", "is a folder, not a file"),
    "--spacing_mm": ("-0.1", "must be more than 0"),
    "--predictions": ("{missing}", "no such file"),
    "--report": ("{file}", "is a file, not a folder"),
    "--worst": ("-1", "must be at least 0"),
    "--opset": ("5", "must be in [9, 23]"),
    "--warmup_updates": ("-1", "must be at least 0"),
    "--measure_updates": ("0", "must be at least 1"),
    "--epoch_images": ("0", "must be at least 1"),
    "--row_timeout_s": ("0", "must be more than 0"),
    "--speed_updates": ("0", "must be at least 1"),
    "--proof_updates": ("0", "must be at least 1"),
    "--time_budget": ("later", "is not a duration such as 90s, 25m, 8h or 1h30m"),
    "--refine_from": ("{missing}", "no such file"),
    "--patch_size": ("48", "must be a positive multiple of 32"),
    "--patch_mm": ("0", "must be more than 0"),
    "--patch_context": ("1", "must be 0 (no context channel) or at least 2"),
    "--local_epochs": ("0", "must be at least 1"),
    "--local_batch": ("0", "must be at least 1"),
    "--local_accumulation_steps": ("0", "must be at least 1"),
    "--local_lr": ("-1", "must be at least 0"),
    "--local_warmup_epochs": ("-1", "must be at least 0"),
    "--local_weight_decay": ("-0.1", "must be at least 0"),
    "--global_share": ("1", "must be in [0.05, 0.95]"),
    "--flag_share": ("0.9", "must be in [0.01, 0.5]"),
}
# (command, flag) -> row, where the same flag means another thing
OVERRIDES = {
    ("predict", "--out"): ("{file}", "is a file, not a folder"),
    ("analyze", "--out"): ("{file}", "is a file, not a folder"),
    ("doctor", "--out"): ("{file}", "is a file, not a folder"),
    ("baseline", "--out"): ("{folder}", "is a folder, not a file"),
    ("export", "--out"): ("{folder}", "is a folder, not a file"),
    ("evaluate", "--output"): ("{folder}", "is a folder, not a file"),
    ("calibrate", "--out"): ("{folder}", "is a folder, not a file"),
    ("calibrate", "--predictions"): ("{missing}", "no such file or folder"),
}


def subcommand_parsers() -> dict:
    parsers = dict(build_parser()._subparsers._group_actions[0].choices)
    parsers["train"] = build_train_parser()
    return parsers


def is_numeric_or_path(action) -> bool:
    kind = action.type.kind if isinstance(action.type, Typed) else action.type
    check = action.type.check if isinstance(action.type, Typed) else None
    return bool(action.option_strings) and (kind in (int, float, Path) or check in PATH_CHECKS)


def row_for(command: str, flag: str):
    return OVERRIDES.get((command, flag)) or ROWS.get(flag)


CASES = [(command, action.option_strings[0]) for command, parser in subcommand_parsers().items()
         for action in parser._actions if is_numeric_or_path(action)]


def test_every_numeric_and_path_flag_has_a_row():
    missing = [f"{command} {flag}" for command, flag in CASES if row_for(command, flag) is None]
    assert not missing, f"numeric or path flags without a bad-value row: {missing}"
    assert len(CASES) > 60  # every command's flags were found


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    return {"file": str(tmp_path / "file.txt"), "folder": str(tmp_path / "folder"),
            "missing": str(tmp_path / "missing" / "nothing")}


def required_args(command: str, paths: dict) -> list[str]:
    """What each command needs besides the flag under test (valid values)."""
    return {"predict": [paths["file"], "--checkpoint", paths["file"], "--out", paths["folder"]],
            "evaluate": ["--predictions", paths["file"]],
            "export": ["--checkpoint", paths["file"]],
            "calibrate": ["--checkpoint", paths["file"], "--predictions", paths["folder"]],
            "analyze": [paths["file"], "--out", paths["folder"]],
            "baseline": ["--out", str(Path(paths["folder"]) / "p.csv")]}.get(command, [])


@pytest.mark.parametrize("command, flag", CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_a_bad_value_is_one_error_line_naming_the_flag(command, flag, paths, capsys):
    value, words = row_for(command, flag)
    nargs = 2 if flag == "--image_size" else 1
    argv = [command, *required_args(command, paths), flag, *[value.format(**paths)] * nargs]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert flag in err and words in err, err


def takes_a_number(action) -> bool:
    kind = action.type.kind if isinstance(action.type, Typed) else action.type
    return bool(action.option_strings) and (kind is float or getattr(kind, "expects", "").startswith("a duration"))


FLOAT_CASES = [(command, action.option_strings[0], word) for command, parser in subcommand_parsers().items()
               for action in parser._actions if takes_a_number(action) for word in ("nan", "inf")]


@pytest.mark.parametrize("command, flag, word", FLOAT_CASES, ids=[f"{c} {f} {w}" for c, f, w in FLOAT_CASES])
def test_a_number_that_is_not_finite_is_refused_as_such(command, flag, word, paths, capsys):
    """'nan' and 'inf' parse as floats: every number flag refuses them by name (an infinite --time_budget was a
    traceback, a NaN --lr was 'must be at least 0')."""
    nargs = 2 if flag == "--image_size" else 1
    assert main([command, *required_args(command, paths), flag, *[word] * nargs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and flag in err, err
    assert f"{word}: must be a finite number" in err or f"'{word}' is not a" in err, err


def test_a_config_file_with_an_infinite_duration_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text('{"time_budget": Infinity, "lr": NaN}')  # what Python's json reads and writes
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--time_budget inf: must be a finite number" in err
    assert "--lr nan: must be a finite number" in err


@pytest.mark.parametrize("flag, value, words", [("--epochs", "ten", "'ten' is not an integer"),
                                                ("--lr", "fast", "'fast' is not a number")])
def test_a_word_where_a_number_belongs(flag, value, words, capsys):
    assert main(["train", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and words in err


@pytest.mark.parametrize("values, words", [
    ({"epochs": 0}, "--epochs 0: must be at least 1"),
    ({"epochs": "ten"}, "--epochs: 'ten' is not an integer"),  # argparse converts a file's words like flags
    ({"epochs": 2.5}, "--epochs 2.5: must be an integer"),
    ({"model": "hrnet_w99"}, "--model 'hrnet_w99': must be one of hrnet, "),
    ({"image_size": [256, 100]}, "--image_size 100: must be a positive multiple of 32"),
    ({"use_ema": "yes"}, "--use_ema 'yes': must be true or false"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, "leave no images to train on"),
])
def test_config_file_values_are_checked_like_flags(values, words, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(values))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("text, words", [("{not json", "not valid JSON (Expecting property name"),
                                         ("[1, 2]", "expected an object of option names"),
                                         ('{"epoch": 3}', "unknown option(s) epoch")])
def test_a_bad_config_file_is_one_error_line(text, words, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1 and words in err, err


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        main(["train", "--config", str(path), "--debug"])
