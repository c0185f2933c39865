"""The user's command lines (seed-requirements.md) must parse exactly as written."""

import json
import shlex

import pytest
import torch

from cephalo.engine.config import TrainConfig, parse_args
from cephalo.engine.precision import resolve_precision

USER_COMMAND = (
    "--dataset_path Aariz --model hrnet --image_size 1024 1024 --batch_size 1 --gradient_accumulation_steps 8 "
    "--epochs 200 --lr 3e-4 --warmup_epochs 10 --mixed_precision --use_ema --num_workers 4 --use_compile "
    "--channels_last --early_stopping --patience 20"
)
SAFE = ("--dataset_path Aariz --model hrnet --image_size 1024 1024 --batch_size 1 --gradient_accumulation_steps 8 "
        "--epochs 200 --lr 3e-4 --warmup_epochs 10 --mixed_precision --use_ema --num_workers 2")
AGGRESSIVE = SAFE.replace("--batch_size 1 --gradient_accumulation_steps 8", "--batch_size 2 --gradient_accumulation_steps 4")


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


def test_precision_on_cpu_says_what_it_uses():
    cpu = torch.device("cpu")
    p = resolve_precision(cpu, True, "fp16")
    assert p.dtype == torch.bfloat16 and not p.scaler and "bf16 instead" in str(p)
    assert resolve_precision(cpu, False).dtype is None
    assert resolve_precision(torch.device("cuda"), True).scaler  # fp16 on CUDA needs the scaler
    assert resolve_precision(torch.device("cuda"), True).dtype == torch.float16
