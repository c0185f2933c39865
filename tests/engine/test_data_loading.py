"""DataLoader options, the device prefetcher, and workers under the spawn start method (Windows)."""

import dataclasses
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from cephalo.engine.config import parse_args
from cephalo.engine.runtime.prefetch import DevicePrefetcher
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.step.data import build_loader
from tests.helpers import TinyHeatmapNet


def test_loader_flags_take_effect(tiny_config):
    config = dataclasses.replace(tiny_config, num_workers=2, prefetch_factor=4)
    t = GlobalStage(config, TinyHeatmapNet())
    loader = t.loader
    assert loader.num_workers == 2 and loader.prefetch_factor == 4 and loader.persistent_workers
    assert not loader.pin_memory  # page-locking only helps copies to a GPU
    off = build_loader(t.train_set, 2, t.sampler, dataclasses.replace(config, persistent_workers=False),
                       torch.device("cpu"))
    assert not off.persistent_workers
    no_workers = build_loader(t.train_set, 2, t.sampler, dataclasses.replace(config, num_workers=0),
                              torch.device("cpu"))
    assert no_workers.prefetch_factor is None and not no_workers.persistent_workers


def test_on_by_default_options_have_no_flags():
    defaults = parse_args([])
    assert defaults.pin_memory and defaults.persistent_workers and defaults.non_blocking
    off = parse_args(["--no_pin_memory", "--no_persistent_workers", "--no_non_blocking", "--prefetch_factor", "4"])
    assert not (off.pin_memory or off.persistent_workers or off.non_blocking) and off.prefetch_factor == 4
    assert parse_args(["--pin_memory"]).pin_memory  # the user's spelling is accepted


def test_prefetcher_yields_the_loader_batches_on_the_device(tiny_config):
    t = GlobalStage(tiny_config, TinyHeatmapNet())
    plain = list(t.loader)
    for overlap in (True, False):
        fetched = list(DevicePrefetcher(t.loader, t.parts.device, non_blocking=overlap))
        assert len(fetched) == len(plain) == len(DevicePrefetcher(t.loader, t.parts.device))
        for (images, landmarks, index), (images2, landmarks2, index2) in zip(plain, fetched):
            assert torch.equal(images, images2) and torch.equal(landmarks, landmarks2) and torch.equal(index, index2)
            assert images2.device == t.parts.device and images2.dtype == torch.uint8


def test_workers_start_with_spawn_as_on_windows(tiny_config):
    """Windows has no fork: the dataset goes to each worker pickled, and workers import everything afresh."""
    t = GlobalStage(tiny_config, TinyHeatmapNet())
    pickle.dumps(t.train_set)
    loader = DataLoader(t.train_set, batch_size=2, sampler=t.sampler, num_workers=1,
                        multiprocessing_context="spawn")
    spawned = [batch[0] for batch in loader]
    in_process = [batch[0] for batch in t.loader]
    assert all(torch.equal(a, b) for a, b in zip(spawned, in_process)) and len(spawned) == len(in_process)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_side_stream_prefetcher_on_cuda(tiny_config):
    t = GlobalStage(dataclasses.replace(tiny_config, device="cuda"), TinyHeatmapNet())
    assert t.loader.pin_memory
    for (images, _, _), (fetched, _, _) in zip(t.loader, DevicePrefetcher(t.loader, t.parts.device)):
        assert fetched.is_cuda and torch.equal(images, fetched.cpu())
