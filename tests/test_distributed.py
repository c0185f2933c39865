"""Two processes with gloo on the CPU, as torchrun starts them, against one process with doubled accumulation."""

import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cephalo.engine.checkpoint import load_checkpoint
from cephalo.engine.config import TrainConfig
from cephalo.engine.data import EpochSampler
from cephalo.engine.trainer import fit
from tests.helpers import TinyHeatmapNet, write_csv_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(rank: int, world_size: int, port: int, config: TrainConfig) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP expects
    fit(config, TinyHeatmapNet())


@pytest.fixture
def config(tiny_config):
    return dataclasses.replace(tiny_config, use_ema=True)


def test_sampler_shards_cover_the_epoch_once():
    shards = [list(EpochSampler(10, seed=3, rank=r, world_size=2)) for r in range(2)]
    whole = list(EpochSampler(10, seed=3))
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]
    odd = [list(EpochSampler(7, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4 and set(odd[0] + odd[1]) == set(range(7))  # padded by wrapping round
    resumed = EpochSampler(10, seed=3, rank=1, world_size=2)
    resumed.set_epoch(0, skip=4)
    assert list(resumed) == whole[4:][1::2]


@pytest.mark.slow
def test_two_processes_equal_one_with_doubled_accumulation(config):
    torch.set_num_threads(1)
    single = dataclasses.replace(config, gradient_accumulation_steps=2, run_name="single")
    torch.manual_seed(0)
    one = fit(single, TinyHeatmapNet())

    ddp = dataclasses.replace(config, gradient_accumulation_steps=1, run_name="ddp")
    mp.spawn(train_rank, args=(2, free_port(), ddp), nprocs=2, join=True)

    a = load_checkpoint(f"{config.output_dir}/single/last.pt")
    b = load_checkpoint(f"{config.output_dir}/ddp/last.pt")
    assert a["updates"] == b["updates"] == 4  # 8 images: 2 updates of 4 per epoch either way
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-6)
    for key in a["ema"]["module"]:
        torch.testing.assert_close(a["ema"]["module"][key], b["ema"]["module"][key], rtol=1e-4, atol=1e-6)
    # validation gathered from both ranks equals the single-process one
    for metric in ("val_mre_mm", "val_sdr_2mm", "val_loss"):
        assert b["metrics"][metric] == pytest.approx(one.metrics[metric], rel=1e-4)
    assert b["config"]["gradient_accumulation_steps"] == 1


@pytest.mark.slow
def test_torchrun_command_line_and_resume_on_another_world_size(tmp_path):
    import subprocess
    import sys

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(64, 48))
    common = ["-m", "cephalo", "train", "--dataset_path", str(csv_path), "--image_size", "32", "32",
              "--batch_size", "2", "--num_workers", "0", "--no_progress", "--output_dir", str(tmp_path / "runs"),
              "--run_name", "r", "--cache_dir", str(tmp_path / "cache"), "--val_fraction", "0.2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), *common, "--epochs", "1"],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("epoch   1:") == 1  # rank 0 alone reports
    assert "2 x 2 processes x 1 accumulation = 4 per update, 2 updates per epoch" in two.stdout
    one = subprocess.run([sys.executable, *common, "--epochs", "2", "--resume", "auto"], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    state = load_checkpoint(tmp_path / "runs" / "r" / "last.pt")
    assert state["epoch"] == 2 and state["updates"] == 2 + 4  # then 8 images in batches of 2 on one process
