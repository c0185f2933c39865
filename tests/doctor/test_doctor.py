"""``cephalo doctor``: it passes on a healthy setup, each correctness check it runs on a CPU fails when its path is
broken on purpose (so none passes by construction), and the recommendation follows the memory budget."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re

import pytest
import torch

import cephalo.doctor.paths as paths
import cephalo.engine.stages.global_stage as global_stage
from cephalo.cli.main import main
from cephalo.doctor.environment import compile_support, free_disk
from cephalo.doctor.memory import memory_checks
from cephalo.doctor.paths import correctness_checks, fast_paths
from cephalo.doctor.prefetch import prefetcher_check
from cephalo.doctor.recommend import command_words, recommend
from cephalo.doctor.report import FAIL, INFO, PASS, SKIPPED
from cephalo.engine.config import TrainConfig, parse_args
from cephalo.engine.runtime.gpu_memory import MARGIN
from cephalo.models import HeatmapModel
from cephalo.models.registry import register_model, unregister
from cephalo.precision import Precision
from tests.engine.test_compile_check import fake_compile
from tests.helpers import CheckpointedBackbone, TinyHead, write_csv_dataset

CPU = torch.device("cpu")
CPU_PATHS = ("bf16 autocast", "channels_last", "gradient checkpointing", "compile default")


@pytest.fixture
def tiny_base(tmp_path):
    """The doctor's training on a 10-image CSV dataset at 32x32 with a two-block BatchNorm model."""
    register_model("tiny_doctor", backbone=lambda in_chans=1: CheckpointedBackbone(in_chans),
                   head=lambda backbone, num_landmarks, head_stride: TinyHead(num_landmarks))
    csv_path, _ = write_csv_dataset(tmp_path / "data", n=10, size=(40, 32))
    yield TrainConfig(dataset_path=str(csv_path), model="tiny_doctor", image_size=(32, 32), head_stride=4,
                      batch_size=2, gradient_accumulation_steps=2, augmentation="none", num_workers=0, epochs=1,
                      warmup_epochs=0.0, use_ema=True, progress=False, device="cpu", val_fraction=0.2,
                      cache_dir=str(tmp_path / "cache"))
    unregister("tiny_doctor")


def statuses(base, compile_modes=("default",)) -> dict[str, str]:
    checks = correctness_checks(base, fast_paths(CPU, compile_modes, None))
    return {c.name: c.status for c in checks}


def test_every_cpu_path_passes_when_nothing_is_broken(tiny_base, monkeypatch):
    fake_compile(monkeypatch, drops_accumulated=False)  # the real compile: test_real_compile_passes_the_doctor
    got = statuses(tiny_base)
    assert {name: got[name] for name in CPU_PATHS} == dict.fromkeys(CPU_PATHS, PASS)
    assert got["fp16 autocast + GradScaler"] == SKIPPED and got["rounding floor (fp32)"] == INFO


def wrong_output_gradient(factor=1.5):
    """While active, the model's output gradient is scaled by ``factor``: a wrong gradient hook."""
    def hook(module, inputs, output):
        if isinstance(module, HeatmapModel) and output.requires_grad:
            output.register_hook(lambda g: g * factor)
    return torch.nn.modules.module.register_module_forward_hook(hook)


def broken_bf16(monkeypatch):
    real = Precision.autocast

    @contextlib.contextmanager
    def autocast(self):
        with real(self):
            if self.dtype is None:
                yield
                return
            handle = wrong_output_gradient()
            try:
                yield
            finally:
                handle.remove()
    monkeypatch.setattr(Precision, "autocast", autocast)


def broken_channels_last(monkeypatch):
    real = global_stage.to_model_input

    def to_model_input(images, device, channels_last):
        x = real(images, device, channels_last)
        return x.flip(-1) if channels_last else x  # a layout mix-up: the image mirrored
    monkeypatch.setattr(global_stage, "to_model_input", to_model_input)
    monkeypatch.setattr(paths, "to_model_input", to_model_input)


def broken_checkpointing(monkeypatch):
    real = HeatmapModel.set_grad_checkpointing

    def set_grad_checkpointing(self, enable=True):
        real(self, enable)
        if enable:
            next(self.parameters()).register_hook(lambda g: g * 1.5)
    monkeypatch.setattr(HeatmapModel, "set_grad_checkpointing", set_grad_checkpointing)


def broken_compile(monkeypatch):
    fake_compile(monkeypatch, drops_accumulated=True)  # right for one micro-batch, wrong over the group


@pytest.mark.parametrize("path, breaks", [("bf16 autocast", broken_bf16), ("channels_last", broken_channels_last),
                                          ("gradient checkpointing", broken_checkpointing),
                                          ("compile default", broken_compile)])
def test_each_cpu_check_fails_when_its_path_is_broken(tiny_base, monkeypatch, path, breaks):
    if path != "compile default":
        fake_compile(monkeypatch, drops_accumulated=False)
    breaks(monkeypatch)
    got = statuses(tiny_base)
    assert got[path] == FAIL
    assert all(got[other] == PASS for other in CPU_PATHS if other != path)  # the break is found where it is


@pytest.mark.slow
def test_real_compile_passes_the_doctor(tiny_base):
    """A real (cold, ~20 s) torch.compile of the tiny model, over the accumulation group and two updates."""
    checks = correctness_checks(tiny_base, [p for p in fast_paths(CPU, ("default",), None)
                                            if getattr(p, "name", "") == "compile default"])
    compiled = next(c for c in checks if c.name == "compile default")
    assert compiled.status == PASS, compiled.detail
    assert {"gradients", "2 updates", "EMA"} <= set(compiled.figures)


def test_reduce_overhead_and_fp16_are_skipped_on_cpu_and_compile_where_it_cannot_work():
    got = {getattr(p, "name"): getattr(p, "status", "run") for p in fast_paths(CPU, ("default", "reduce-overhead"),
                                                                               None)}
    assert got["compile reduce-overhead"] == SKIPPED and got["fp16 autocast + GradScaler"] == SKIPPED
    assert got["compile default"] == "run"
    no_compiler = fast_paths(CPU, ("default",), "no C++ compiler")
    assert next(p for p in no_compiler if p.name == "compile default").status == SKIPPED


def fake_peaks(per_image_gib: float, fixed_gib: float = 1.0):
    """A measurement (one fresh process each on a GPU) that reports fixed + per-image memory; checkpointing
    keeps a third of the activations."""
    specs = []

    def measure(spec):
        specs.append(spec)
        images = spec["micro_batch"] * (1 / 3 if spec["overrides"]["gradient_checkpointing"] else 1)
        return {"peak_bytes": int((fixed_gib + per_image_gib * images) * 2**30), "reserved_bytes": 0}
    return measure, specs


@pytest.mark.parametrize("budget_gib, micro, checkpointing", [(24, 4, False), (8, 4, False), (5, 2, False),
                                                              (3, 1, False), (1.8, 1, True)])
def test_a_smaller_budget_gives_a_smaller_micro_batch(tiny_base, budget_gib, micro, checkpointing):
    measure, specs = fake_peaks(per_image_gib=1.2)  # micro-batch 1: 2.2 GiB, 2: 3.4, 4: 5.8
    checks, peaks = memory_checks(tiny_base, 3, 8, int(budget_gib * 2**30), measure=measure)
    assert len(specs) == 6 and {s["micro_batch"] for s in specs} == {1, 2, 4}  # 1, 2, 4, with and without
    assert all(c.status in (PASS, INFO) for c in checks)  # "does not fit" is a result, not a FAIL
    r = recommend("cuda", 8, 1, peaks, budget_gib * 2**30 * (1 - MARGIN), {"fp16 autocast + GradScaler"}, {})
    assert (r.micro_batch, r.accumulation, r.gradient_checkpointing) == (micro, 8 // micro, checkpointing)
    assert r.fits and r.mixed_precision


def test_nothing_fits_says_what_to_change(tiny_base):
    measure, _ = fake_peaks(per_image_gib=3.0, fixed_gib=2.0)
    _, peaks = memory_checks(tiny_base, 3, 8, 2 * 2**30, measure=measure)
    r = recommend("cuda", 8, 1, peaks, 2 * 2**30 * (1 - MARGIN), set(), {})
    assert not r.fits and "lower --image_size" in r.reasons[0]


def test_the_recommended_command_is_a_valid_train_command():
    r = recommend("cuda", 8, 1, {(1, False): 2**30, (2, False): 2**31, (4, False): 2**33}, 3 * 2**30,
                  {"fp16 autocast + GradScaler", "channels_last", "compile default"},
                  {"eager": 10.0, "channels_last": 10.1, "compile default": 13.0})
    words = command_words(r, "synthetic", "hrnet", (1024, 1024), 8.0)
    config = parse_args(words[2:])
    assert (config.batch_size, config.gradient_accumulation_steps) == (2, 4)
    assert config.mixed_precision and config.use_compile and config.compile_mode == "default"
    assert config.channels_last and config.use_ema and config.vram_budget_gb == 8.0
    slower = recommend("cuda", 8, 1, None, 0, {"channels_last", "compile default"},
                       {"eager": 10.0, "channels_last": 10.1, "compile default": 10.2})
    assert slower.compile_mode is None and not slower.channels_last  # within 3 %: the simpler one


def test_environment_says_how_to_get_compile_working(monkeypatch, tmp_path):
    import shutil
    import sys

    import cephalo.doctor.environment as environment

    monkeypatch.setattr(shutil, "which", lambda name: None)
    no_compiler = compile_support(CPU)
    assert no_compiler.status == SKIPPED and "C++ compiler" in no_compiler.detail
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(torch, "__version__", "2.7.1+cu128")
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: True)
    monkeypatch.setattr(environment, "_version", lambda name: "3.2.0.post19" if name == "triton-windows" else None)
    mismatch = compile_support(torch.device("cuda"))
    assert mismatch.status == FAIL and 'pip install "triton-windows<3.4"' in mismatch.detail
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 2**20))
    disk = free_disk(tmp_path / "cache", (1024, 1024))
    assert disk.status == FAIL and "--cache_dir" in disk.detail


def test_the_prefetcher_check_is_skipped_without_cuda():
    assert prefetcher_check(CPU).status == SKIPPED


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the prefetcher's copies overlap only on CUDA")
def test_the_prefetcher_check_fails_without_its_stream_wait(monkeypatch):
    assert prefetcher_check(torch.device("cuda")).status == PASS
    monkeypatch.setattr(torch.cuda.Stream, "wait_stream", lambda self, other: None)
    assert prefetcher_check(torch.device("cuda")).status == FAIL


def test_doctor_on_cpu_passes_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "doctor"
    code = main(["doctor", "--device", "cpu", "--image_size", "64", "64", "--compile_modes", "none",
                 "--gradient_accumulation_steps", "2", "--speed_updates", "1", "--proof_updates", "1",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "doctor.json").read_text())
    assert report["settings"]["resolved_model"] == "hrnet_w18_small"  # the small model on a CPU
    checks = {(c["section"], c["name"]): c["status"] for c in report["checks"]}
    assert checks["correctness", "channels_last"] == PASS and checks["correctness", "gradient checkpointing"] == PASS
    assert checks["recommendation", "2 updates of the recommendation"] == PASS
    assert checks["speed", "eager"] == INFO
    local = next(c for c in report["checks"] if c["name"].startswith("local stage (hrnet_w18_small, 64 px patches"))
    assert local["status"] == INFO and "patches/s" in local["detail"] and local["figures"]["stage"] == "local"
    assert not [c for c in report["checks"] if c["status"] == FAIL]
    assert report["command"].startswith("cephalo train --dataset_path synthetic --model hrnet_w18_small")
    assert "recommended for this machine" in printed and "correctness:" in printed
    # each check is shown as it is made, with the time so far, before the table at the end
    streamed = printed[:printed.index("recommended for this machine")]
    assert re.search(r"\[ *\d+ s\] channels_last: PASS", streamed), printed
    assert streamed.index("channels_last: PASS") < streamed.index("speed:") < streamed.index("eager: INFO")
    assert (out / "doctor.md").read_text().startswith("# cephalo doctor")


def test_max_autotune_is_checked_only_when_named(tiny_base):
    from cephalo.doctor.run import DoctorOptions

    assert DoctorOptions().modes() == ("default", "reduce-overhead")
    assert DoctorOptions(compile_modes="none").modes() == ()
    assert dataclasses.replace(DoctorOptions(), compile_modes="max-autotune").modes() == ("max-autotune",)


def test_a_precision_too_noisy_to_judge_is_still_recommended_but_a_failed_one_is_not():
    unjudged = recommend("cpu", 8, 1, None, 0, {"channels_last"}, {}, unchecked={"bf16 autocast"})
    assert unjudged.mixed_precision and "not judged at this size" in unjudged.reasons[1]
    assert not recommend("cpu", 8, 1, None, 0, {"channels_last"}, {}).mixed_precision
    gpu = recommend("cuda", 8, 1, None, 0, {"bf16 autocast"}, {})
    assert gpu.mixed_precision and gpu.amp_dtype == "bf16"  # fp16 failed or was not checked, bf16 passed


def test_the_memory_worker_runs_in_a_fresh_process_and_reports_errors_as_a_result(tiny_base):
    """On a CPU the worker gets as far as the CUDA measurement (spec read, model built) and says why it stopped."""
    from cephalo.doctor.memory import measure_in_fresh_process

    config = dataclasses.replace(tiny_base, model="hrnet_w18_small", image_size=(64, 64))
    result = measure_in_fresh_process({"overrides": config.to_dict(), "landmarks": 3, "micro_batch": 1})
    assert set(result) == {"error"} and "cuda" in result["error"]
