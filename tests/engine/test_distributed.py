"""Two processes with gloo on the CPU, as torchrun starts them, against one process with doubled accumulation."""

import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cephalo.artifact.checkpoint import GLOBAL, LOCAL, load_checkpoint
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.pipeline import train
from cephalo.engine.step.data import EpochSampler
from tests.helpers import TinyHeatmapNet, register_tiny_models, write_csv_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(rank: int, world_size: int, port: int, config: TrainConfig) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP expects
    TrainConfig.check = lambda self: None  # a fresh process: the test's tiny models and settings again
    if config.refine_from:
        import cephalo.engine.stages.local_stage as local_stage

        register_tiny_models()
        local_stage.ONLY_IF_BETTER = False
        train(config)
    else:
        train(config, TinyHeatmapNet())


def test_sampler_shards_cover_the_epoch_once():
    shards = [list(EpochSampler(10, seed=3, rank=r, world_size=2)) for r in range(2)]
    whole = list(EpochSampler(10, seed=3))
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]
    odd = [list(EpochSampler(7, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4 and set(odd[0] + odd[1]) == set(range(7))  # padded by wrapping round
    resumed = EpochSampler(10, seed=3, rank=1, world_size=2)
    resumed.set_epoch(0, skip=4)
    assert list(resumed) == whole[4:][1::2]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [GLOBAL, LOCAL])
def test_two_processes_equal_one_with_doubled_accumulation(two_stage_config, stage):
    """2 processes of batch 2 against 1 process of 2 x 2 accumulation: the same 4 images per update, grouped
    otherwise (rank 0 takes images 0 and 2, the single process 0 and 1). The loss of a micro-batch is a mean over
    its landmarks inside the image (or patch), so the groups add up alike only when none is outside: here 64 px
    patches of 0.5 mm hold the whole 8 x 6 mm image whatever the jitter. BatchNorm is per process in both stages
    (--sync_bn on CUDA); the tiny models have none, so the two groupings compare exactly."""
    torch.set_num_threads(1)
    config = dataclasses.replace(two_stage_config, refine=False, use_ema=True, patch_size=64, patch_mm=0.5)
    accumulation, prefix = ("gradient_accumulation_steps", "") if stage == GLOBAL else ("local_accumulation_steps",
                                                                                         "local_")
    if stage == LOCAL:
        torch.manual_seed(0)
        source = train(dataclasses.replace(config, run_name="source", epochs=1)).run_dir / "best.pt"
        config = dataclasses.replace(config, refine_from=str(source))
    torch.manual_seed(0)
    one = train(dataclasses.replace(config, **{accumulation: 2}, run_name="single"),
                None if stage == LOCAL else TinyHeatmapNet())
    ddp = dataclasses.replace(config, **{accumulation: 1}, run_name="ddp")
    mp.spawn(train_rank, args=(2, free_port(), ddp), nprocs=2, join=True)

    a = load_checkpoint(f"{config.output_dir}/single/{prefix}last.pt")
    b = load_checkpoint(f"{config.output_dir}/ddp/{prefix}last.pt")
    assert a["updates"] == b["updates"] == 4  # 8 images: 2 updates of 4 per epoch either way
    assert max_difference(a["model"], b["model"]) <= 1e-5
    assert max_difference(a["ema"]["module"], b["ema"]["module"]) <= 1e-5
    # validation gathered from both ranks equals the single-process one
    for metric in ("val_mre_mm", "val_sdr_2mm") + (("val_loss",) if stage == GLOBAL else ()):
        assert b["metrics"][metric] == pytest.approx(one.metrics[metric], rel=1e-4)
    assert b["config"][accumulation] == 1


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


@pytest.mark.slow
def test_torchrun_refine_trains_both_stages_and_resumes_its_local_stage_on_another_world_size(tmp_path):
    import subprocess
    import sys

    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(64, 48))
    common = ["-m", "cephalo", "train", "--dataset_path", str(csv_path), "--image_size", "32", "32",
              "--batch_size", "2", "--num_workers", "0", "--no_progress", "--output_dir", str(tmp_path / "runs"),
              "--run_name", "r", "--cache_dir", str(tmp_path / "cache"), "--val_fraction", "0.2", "--epochs", "1",
              "--refine", "--patch_size", "32", "--local_batch", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), *common, "--local_epochs", "1"],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("local epoch   1:") == 1  # rank 0 alone reports
    assert "local stage batch: 2 images x 2 processes x 1 accumulation = 4 per update, 2 updates per epoch" \
        in two.stdout
    best = load_checkpoint(tmp_path / "runs" / "r" / "best.pt")
    assert set(best["stages"]) == {GLOBAL, LOCAL}
    one = subprocess.run([sys.executable, *common, "--local_epochs", "2", "--resume", "auto"], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    state = load_checkpoint(tmp_path / "runs" / "r" / "local_last.pt")
    assert state["epoch"] == 2 and state["updates"] == 2 + 4  # then 8 images in batches of 2 on one process
