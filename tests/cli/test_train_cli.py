"""The user's command lines must parse exactly as written (in the folder where their Aariz dataset is)."""

import json
import shlex

import pytest
import torch

from cephalo.engine.config import TrainConfig, parse_args
from cephalo.precision import resolve_precision

USER_COMMAND = (
    "--dataset_path Aariz --model hrnet --image_size 1024 1024 --batch_size 1 --gradient_accumulation_steps 8 "
    "--epochs 200 --lr 3e-4 --warmup_epochs 10 --mixed_precision --use_ema --num_workers 4 --use_compile "
    "--channels_last --early_stopping --patience 20"
)
SAFE = ("--dataset_path Aariz --model hrnet --image_size 1024 1024 --batch_size 1 --gradient_accumulation_steps 8 "
        "--epochs 200 --lr 3e-4 --warmup_epochs 10 --mixed_precision --use_ema --num_workers 2")
AGGRESSIVE = SAFE.replace("--batch_size 1 --gradient_accumulation_steps 8", "--batch_size 2 --gradient_accumulation_steps 4")


@pytest.fixture(autouse=True)
def in_the_users_folder(tmp_path, monkeypatch):
    """The commands say --dataset_path Aariz: they run next to the user's Aariz folder (paths are checked)."""
    (tmp_path / "Aariz").mkdir()
    monkeypatch.chdir(tmp_path)


def test_users_full_command():
    c = parse_args(shlex.split(USER_COMMAND))
    assert (c.dataset_path, c.model, c.image_size) == ("Aariz", "hrnet", (1024, 1024))
    assert (c.batch_size, c.gradient_accumulation_steps, c.epochs, c.lr, c.warmup_epochs) == (1, 8, 200, 3e-4, 10)
    assert c.mixed_precision and c.use_ema and c.use_compile and c.channels_last and c.early_stopping
    assert (c.num_workers, c.patience, c.dataset_format) == (4, 20, None)


@pytest.mark.parametrize("command, batch, accumulation", [(SAFE, 1, 8), (AGGRESSIVE, 2, 4)])
def test_users_8gb_variants(command, batch, accumulation):
    c = parse_args(shlex.split(command))
    assert (c.batch_size, c.gradient_accumulation_steps, c.num_workers) == (batch, accumulation, 2)
    assert c.mixed_precision and c.use_ema and not c.use_compile


def test_config_file_gives_defaults_and_flags_win(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "resnet50", "epochs": 7, "lr": 0.01}))
    c = parse_args(["--config", str(path), "--epochs", "3"])
    assert (c.model, c.epochs, c.lr) == ("resnet50", 3, 0.01)
    path.write_text(json.dumps({"epoch": 7}))
    with pytest.raises(ValueError, match="unknown option.*epoch"):
        parse_args(["--config", str(path)])


def test_bad_choice_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--model", "hrnet_w64"])
    assert "invalid choice" in capsys.readouterr().err


def test_defaults_are_the_quick_synthetic_job():
    c = TrainConfig()
    assert c.dataset_path == "synthetic" and c.model == "hrnet_w18_small" and c.image_size == (256, 256)
    assert c.head_stride == 2 and c.epochs == 20 and c.augmentation == "full"


def test_precision_on_cpu_says_what_it_uses():
    cpu = torch.device("cpu")
    p = resolve_precision(cpu, True, "fp16")
    assert p.dtype == torch.bfloat16 and not p.scaler and "bf16 instead" in str(p)
    assert resolve_precision(cpu, False).dtype is None
    assert resolve_precision(torch.device("cuda"), True).scaler  # fp16 on CUDA needs the scaler
    assert resolve_precision(torch.device("cuda"), True).dtype == torch.float16


def test_train_script_at_the_repository_root():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "train_1024x1024.py"), "--help"], capture_output=True, text=True,
                         check=True)
    assert "--gradient_accumulation_steps" in out.stdout and "--use_ema" in out.stdout


def test_cephalo_train_end_to_end(tmp_path, capsys):
    from cephalo.artifact.checkpoint import load_checkpoint
    from cephalo.cli.main import main
    from tests.helpers import write_csv_dataset

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=6, size=(80, 64))
    args = ["train", "--dataset_path", str(csv_path), "--image_size", "64", "64", "--epochs", "2", "--batch_size", "2",
            "--num_workers", "1", "--no_progress", "--output_dir", str(tmp_path / "runs"), "--run_name", "r",
            "--mixed_precision", "--use_ema", "--channels_last", "--val_fraction", "0.34"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bf16 autocast" in out and "epoch   2" in out and "MRE" in out
    run = tmp_path / "runs" / "r"
    for name in ["config.json", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt"]:
        assert (run / name).is_file(), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "config.json").read_text())["mixed_precision"] is True
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_impossible_device_is_explained(tmp_path, capsys):
    from cephalo.cli.main import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--device", "cuda", "--output_dir", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_users_command_shape_runs_on_an_aariz_folder(tmp_path, monkeypatch, capsys):
    """The user's flags on an Aariz layout, shrunk to a tiny model and image so that it runs in seconds."""
    from cephalo.cli.main import main
    from tests.fixtures_datasets import AarizBuilder

    builder = AarizBuilder(tmp_path / "Aariz", split_folders={"train": "Train"})
    for i in range(4):
        builder.add_case(f"train{i}", "train")
    for i in range(2):
        builder.add_case(f"valid{i}", "valid", ext=".jpg")
    monkeypatch.chdir(tmp_path)  # --dataset_path Aariz, relative, as the user writes it
    command = USER_COMMAND.replace("--model hrnet", "--model hrnet_w18_small").replace("1024 1024", "64 64")
    command = command.replace("--epochs 200", "--epochs 2").replace("--use_compile ", "").replace("--num_workers 4",
                                                                                                   "--num_workers 0")
    assert main(["train", *shlex.split(command), "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "aariz: train = 'train', validation = 'valid' (4 / 2 images)" in out
    assert "batch: 1 x 8 accumulation = 8 per update, 1 updates per epoch" in out and "EMA" in out


def test_presets_and_what_overrides_them(tmp_path):
    c = parse_args(["--preset", "rtx3070ti"])
    assert (c.batch_size, c.gradient_accumulation_steps, c.num_workers) == (1, 8, 2)
    assert c.mixed_precision and c.use_ema
    c = parse_args(["--preset", "rtx3070ti-aggressive", "--gradient_accumulation_steps", "6"])
    assert (c.batch_size, c.gradient_accumulation_steps) == (2, 6)  # the explicit flag wins
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"preset": "rtx3060", "batch_size": 3}))
    c = parse_args(["--config", str(path)])
    assert (c.batch_size, c.gradient_accumulation_steps) == (3, 4)  # the file beats its preset


def test_launchers_run_the_safe_preset():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("train_1024x1024_rtx3070ti.bat", "train_1024x1024_rtx3070ti.sh"):
        text = (root / name).read_text()
        line = next(l for l in text.replace("\\\n", " ").splitlines() if "train_1024x1024.py" in l and "python" in l)
        args = shlex.split(line.split("train_1024x1024.py", 1)[1].replace("%*", "").replace('"$@"', ""))
        c = parse_args(args)
        assert (c.dataset_path, c.model, c.image_size, c.preset) == ("Aariz", "hrnet", (1024, 1024), "rtx3070ti")
        assert (c.batch_size, c.gradient_accumulation_steps, c.num_workers, c.epochs) == (1, 8, 2, 200)
        assert c.mixed_precision and c.use_ema
