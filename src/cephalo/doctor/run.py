"""``cephalo doctor`` in order: environment -> data -> correctness of every fast path (and the prefetcher) ->
memory at micro-batch 1, 2, 4 (fresh processes) -> speed of the variants that passed -> the local stage's speed and
memory (a fresh process) -> the recommended settings -> those settings run for a few updates in a fresh process
(the proof)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cephalo.bench.run import run_worker
from cephalo.checks import above, at_least, between, dataset_location, device_name, multiple_of, writable_folder
from cephalo.datasets.sources import default_cache_dir
from cephalo.device import resolve_device
from cephalo.doctor.environment import environment_checks
from cephalo.doctor.memory import memory_checks
from cephalo.doctor.paths import correctness_checks, fast_paths
from cephalo.doctor.prefetch import prefetcher_check
from cephalo.doctor.recommend import Recommendation, command_text, command_words, recommend
from cephalo.doctor.report import FAIL, INFO, PASS, SKIPPED, Check, check_line, shown
from cephalo.doctor.speed import local_stage_check, speed_checks
from cephalo.engine.config import COMPILE_MODES, TrainConfig, parse_args
from cephalo.engine.runtime.gpu_memory import MARGIN, apply_vram_budget
from cephalo.engine.step.data import build_datasets
from cephalo.flags import option
from cephalo.models import MODEL_NAMES

GPU_DEFAULTS = {"model": "hrnet", "image_size": (1024, 1024)}  # the user's setup
CPU_DEFAULTS = {"model": "hrnet_w18_small", "image_size": (128, 128)}  # minutes on a few cores, compile included


def compile_mode_list(value: str) -> str | None:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if modes == ["none"]:
        return None
    unknown = [m for m in modes if m not in COMPILE_MODES]
    return f"unknown compile mode(s) {', '.join(unknown)}: give some of {', '.join(COMPILE_MODES)}, or none" \
        if unknown or not modes else None


@dataclass
class DoctorOptions:
    device: str = option("auto", "auto|cpu|cuda|cuda:N", check=device_name)
    model: str | None = option(None, "network (default: hrnet, i.e. HRNet-W32, on a GPU; hrnet_w18_small on a "
                               "CPU)", choices=MODEL_NAMES)
    image_size: tuple[int, int] | None = option(None, "network input H W (default: 1024 1024 on a GPU, 128 128 on a "
                                                "CPU)", type=int, metavar=("H", "W"),
                                                check=multiple_of(32, "the networks downsample 32x"))
    dataset_path: str = option("synthetic", "images for the checks and the proof run: your dataset (folder or "
                               "CSV), or 'synthetic'", check=dataset_location)
    cache_dir: str | None = option(None, "letterbox cache (default: $CEPHALO_CACHE or "
                                   f"{default_cache_dir()})", check=writable_folder)
    batch_size: int = option(1, "the micro-batch you train with now; images per update = this x "
                             "--gradient_accumulation_steps, kept by the recommendation", check=at_least(1))
    gradient_accumulation_steps: int = option(8, "micro-batches per update you train with now", check=at_least(1))
    vram_budget_gb: float | None = option(None, "GPU memory to plan for, in GiB (default: this GPU's; 8 emulates "
                                          "an 8 GB card on a larger one)", type=float, check=above(0))
    compile_modes: str = option("default,reduce-overhead", "compile modes to check, comma-separated, or 'none' "
                                "(max-autotune compiles for many minutes: checked only when named)",
                                check=compile_mode_list)
    speed_updates: int = option(3, "optimizer updates timed per speed variant (after one warm-up update)",
                                check=at_least(1))
    proof_updates: int = option(3, "optimizer updates the recommended settings run for", check=at_least(1))
    out: str = option("cephalo-doctor", "folder for doctor.md and doctor.json", check=writable_folder)
    seed: int = option(0, "seed of the weights and the synthetic data", check=between(0, 2**32 - 1))

    def modes(self) -> tuple[str, ...]:
        words = tuple(m.strip() for m in self.compile_modes.split(",") if m.strip())
        return () if words == ("none",) else words


@dataclass
class DoctorResult:
    checks: list[Check]
    recommendation: Recommendation
    command: str
    settings: dict

    def to_dict(self) -> dict:
        return {"settings": self.settings, "checks": [dataclasses.asdict(c) for c in self.checks],
                "recommendation": self.recommendation.to_dict(), "command": self.command}


def base_config(o: DoctorOptions, device: torch.device) -> TrainConfig:
    """The training the checks run: the user's model, size and micro-batches; nothing random (no augmentation,
    no warm-up: the first update moves the weights), one process, EMA on as in the presets."""
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    return TrainConfig(dataset_path=o.dataset_path, cache_dir=o.cache_dir, seed=o.seed, device=str(device),
                       model=o.model or defaults["model"], image_size=o.image_size or defaults["image_size"],
                       batch_size=o.batch_size, gradient_accumulation_steps=o.gradient_accumulation_steps,
                       vram_budget_gb=o.vram_budget_gb, augmentation="none", num_workers=0, epochs=1,
                       warmup_epochs=0.0, use_ema=True, progress=False)


def budget_bytes(o: DoctorOptions, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    return min(total, int(o.vram_budget_gb * 2**30)) if o.vram_budget_gb else total


def speed_variants(passed: set[str], modes: tuple[str, ...], precision: dict) -> dict[str, dict]:
    """eager, channels_last and each compile mode that passed (with channels_last where that passed), all at the
    recommended precision; in order of complexity (the recommendation prefers the simpler at equal speed)."""
    variants = {"eager": dict(precision)}
    if "channels_last" in passed:
        variants["channels_last"] = {**precision, "channels_last": True}
    for mode in modes:
        if f"compile {mode}" in passed:
            variants[f"compile {mode}"] = {**precision, "use_compile": True, "compile_mode": mode,
                                           "channels_last": "channels_last" in passed}
    return variants


def prove(words: list[str], dataset_path: str, cache_dir: str | None, updates: int, timeout_s: float = 1800) -> Check:
    """Parse the recommended command as ``cephalo train`` does and train it for ``updates`` updates in a fresh
    process (the bench worker: the training loop of ``cephalo train``, without validation or checkpoints)."""
    config = parse_args(words[2:] + (["--cache_dir", cache_dir] if cache_dir else []))
    overrides = {**config.to_dict(), "dataset_path": dataset_path, "progress": False, "num_workers": 0}
    spec = {"row": "doctor-proof", "overrides": overrides, "warmup_updates": 1, "measure_updates": updates}
    result = run_worker(spec, timeout_s)
    name = f"{updates + 1} updates of the recommendation"
    if "error" in result:
        return Check("recommendation", name, FAIL, result["error"], result)
    memory = ""
    if result.get("memory_kind") == "cuda_max_allocated":
        memory = f", {result['peak_memory_bytes'] / 2**30:.2f} GiB peak ({result['peak_reserved_bytes'] / 2**30:.2f} " \
                 "reserved)"
    return Check("recommendation", name, PASS, f"{result['images_per_s']:.3g} images/s{memory}, "
                 f"{result['skipped_updates']} skipped updates", result)


def run_doctor(o: DoctorOptions, say=print) -> DoctorResult:
    device = resolve_device(o.device)
    base = base_config(o, device)
    base.check()
    checks = environment_checks(device, Path(o.cache_dir) if o.cache_dir else default_cache_dir(), base.image_size)
    compile_check = next(c for c in checks if c.name == "torch.compile")
    start = time.monotonic()

    def show(check: Check) -> None:  # each line as it is made, with the time so far: a cold compile takes minutes
        say(f"  [{time.monotonic() - start:4.0f} s] {check_line(check)}")

    say("environment:")
    for check in checks:
        show(check)
    if o.vram_budget_gb and device.type == "cuda":
        say(apply_vram_budget(device, o.vram_budget_gb))
    train_set, _, data_note = build_datasets(base)  # cached once, before the checks read it
    say(f"data: {data_note}")
    landmarks = len(train_set.landmark_names)

    say(f"correctness: every fast path against eager fp32 (TF32 off), {base.model} at "
        f"{base.image_size[0]}x{base.image_size[1]}, {base.gradient_accumulation_steps} x {base.batch_size} images")
    usable = None if compile_check.status == PASS else compile_check.detail
    correctness = correctness_checks(base, fast_paths(device, o.modes(), usable), show) \
        + [shown(show, prefetcher_check(device))]
    checks += correctness
    passed = {c.name for c in correctness if c.status == PASS}
    unchecked = {c.name for c in correctness if c.figures.get("ill_conditioned")}

    per_update = o.batch_size * o.gradient_accumulation_steps
    budget = budget_bytes(o, device)
    peaks = None
    if budget is not None:
        say("memory: micro-batch 1, 2, 4 with and without checkpointing, each in a fresh process")
        precision = {"mixed_precision": True} if "fp16 autocast + GradScaler" in passed | unchecked else {}
        memory, peaks = memory_checks(dataclasses.replace(base, **precision), landmarks, per_update, budget,
                                      show=show)
        checks += memory
    else:
        checks.append(shown(show, Check("memory", "GPU memory", SKIPPED,
                                        f"measured on CUDA only (this run is on {device})")))

    limit = (budget or 0) * (1 - MARGIN)
    draft = recommend(device.type, per_update, o.batch_size, peaks, limit, passed, {}, unchecked)
    micro = {"batch_size": draft.micro_batch, "gradient_accumulation_steps": draft.accumulation,
             "gradient_checkpointing": draft.gradient_checkpointing}
    precision = {"mixed_precision": draft.mixed_precision, "amp_dtype": draft.amp_dtype}
    say(f"speed: {', '.join(speed_variants(passed, o.modes(), precision))} at micro-batch {draft.micro_batch}")
    speed, speeds = speed_checks(dataclasses.replace(base, **micro), speed_variants(passed, o.modes(), precision),
                                 o.speed_updates, show)
    checks += speed
    layout = {"channels_last": True} if "channels_last" in passed else {}
    say(f"local stage (--refine): its step at the same precision{', channels_last' if layout else ''}, in a fresh "
        "process")
    checks.append(shown(show, local_stage_check(base, {**precision, **layout}, o.speed_updates)))

    final = recommend(device.type, per_update, o.batch_size, peaks, limit, passed, speeds, unchecked)
    words = command_words(final, o.dataset_path, base.model, base.image_size, o.vram_budget_gb)
    checks += [Check("recommendation", "settings", INFO, why) for why in final.reasons]
    if final.fits:
        say(f"proof: {command_text(words)} for {o.proof_updates + 1} updates")
        checks.append(shown(show, prove(words, o.dataset_path, o.cache_dir, o.proof_updates)))
    else:
        checks.append(Check("recommendation", "proof run", SKIPPED, "nothing fits this budget at this size"))
    settings = {**dataclasses.asdict(o), "resolved_model": base.model, "resolved_image_size": list(base.image_size),
                "device": str(device)}
    return DoctorResult(checks, final, command_text(words), settings)
