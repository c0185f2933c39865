"""The settings for this machine, from what the doctor measured: the largest micro-batch that fits (checkpointing
only where nothing fits without it), the mixed precision that passed, and channels_last or a compile mode only
where they passed their correctness check and are measurably faster. Pure: no measuring here."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field

FASTER = 1.03  # a variant must beat the simpler one by 3 %: below that, run-to-run noise of a few updates


@dataclass
class Recommendation:
    """TrainConfig values for this card (``train_flags``) and, one line each, why."""

    micro_batch: int
    accumulation: int
    gradient_checkpointing: bool = False
    mixed_precision: bool = False
    amp_dtype: str = "auto"
    channels_last: bool = False
    compile_mode: str | None = None
    fits: bool = True  # False: nothing measured fits the budget (the lines say what to change)
    reasons: list[str] = field(default_factory=list)

    def train_flags(self) -> dict:
        flags = {"batch_size": self.micro_batch, "gradient_accumulation_steps": self.accumulation,
                 "gradient_checkpointing": self.gradient_checkpointing, "mixed_precision": self.mixed_precision,
                 "amp_dtype": self.amp_dtype, "channels_last": self.channels_last, "use_ema": True,
                 "use_compile": self.compile_mode is not None}
        if self.compile_mode is not None:
            flags["compile_mode"] = self.compile_mode
        return flags

    def to_dict(self) -> dict:
        return {**asdict(self), "train_flags": self.train_flags()}


def pick_micro_batch(per_update: int, peaks: dict[tuple[int, bool], int | None] | None, limit_bytes: float,
                     given: int) -> tuple[int, bool, bool, str]:
    """(micro-batch, checkpointing, fits, why) from the measured ``peaks`` (``None``: not measured, e.g. on CPU,
    where ``given`` stays). Without checkpointing first: it costs time."""
    if not peaks:
        return given, False, True, f"micro-batch {given} as given (GPU memory is measured on CUDA only)"
    for checkpointing in (False, True):
        fitting = [b for (b, ckpt), peak in peaks.items() if ckpt == checkpointing and peak is not None
                   and peak <= limit_bytes]
        if fitting:
            best = max(fitting)
            peak = peaks[(best, checkpointing)]
            how = "with gradient checkpointing (nothing fits without it)" if checkpointing else "without checkpointing"
            return best, checkpointing, True, (f"micro-batch {best} {how}: {peak / 2**30:.2f} GiB peak of "
                                               f"{limit_bytes / 2**30:.2f} GiB usable")
    return 1, True, False, ("nothing measured fits, not even micro-batch 1 with checkpointing: lower --image_size "
                            "or use a lighter --model")


def pick_precision(device_type: str, passed: set[str], unchecked: set[str] = frozenset()) -> tuple[bool, str, str]:
    """(mixed_precision, amp_dtype, why): fp16 + GradScaler on CUDA (the 8 GB presets'), bf16 on CPU or where fp16
    failed; fp32 if none passed. ``unchecked``: paths that ran but could not be judged at this size (the rounding
    floor too large): not a failure, so such a mixed precision is still recommended, and the line says so."""
    candidates = [("bf16 autocast", "auto")]  # on CPU --mixed_precision is bf16
    if device_type == "cuda":
        candidates = [("fp16 autocast + GradScaler", "auto"), ("bf16 autocast", "bf16")]
    for name, amp_dtype in candidates:
        if name in passed:
            return True, amp_dtype, f"{name} (passed its check)"
    for name, amp_dtype in candidates:
        if name in unchecked:
            return True, amp_dtype, (f"{name}: not judged at this size (see its line), recommended as the presets "
                                     "do; run the doctor at your training size to check it")
    return False, "auto", "fp32: no mixed precision passed its check here"


def pick_speed(speeds: dict[str, float]) -> tuple[str, str]:
    """The fastest variant that beats the simpler ones by :data:`FASTER` (``speeds`` in order of complexity:
    eager, channels_last, compile modes); returns its name and why."""
    if "eager" not in speeds:
        return "eager", "eager: the speed of the variants was not measured"
    chosen = "eager"
    for name, rate in speeds.items():
        if rate > speeds[chosen] * FASTER:
            chosen = name
    others = ", ".join(f"{n} {r:.3g}" for n, r in speeds.items())
    return chosen, f"{chosen} is the fastest that passed ({others} images/s)"


def recommend(device_type: str, per_update: int, given_micro_batch: int, peaks: dict | None, limit_bytes: float,
              passed: set[str], speeds: dict[str, float], unchecked: set[str] = frozenset()) -> Recommendation:
    micro, checkpointing, fits, why_memory = pick_micro_batch(per_update, peaks, limit_bytes, given_micro_batch)
    mixed, amp_dtype, why_precision = pick_precision(device_type, passed, unchecked)
    fastest, why_speed = pick_speed(speeds)
    compile_mode = fastest.removeprefix("compile ") if fastest.startswith("compile ") else None
    channels_last = fastest == "channels_last" or (compile_mode is not None and "channels_last" in speeds)
    return Recommendation(micro, per_update // micro, checkpointing, mixed, amp_dtype, channels_last, compile_mode,
                          fits, [why_memory, why_precision, why_speed])


def command_words(recommendation: Recommendation, dataset_path: str, model: str, image_size: tuple[int, int],
                  vram_budget_gb: float | None) -> list[str]:
    """``cephalo train`` with the recommended settings (add your own --epochs, --lr, ...)."""
    r = recommendation
    words = ["cephalo", "train", "--dataset_path", dataset_path, "--model", model, "--image_size",
             str(image_size[0]), str(image_size[1]), "--batch_size", str(r.micro_batch),
             "--gradient_accumulation_steps", str(r.accumulation)]
    if r.mixed_precision:
        words += ["--mixed_precision"] + (["--amp_dtype", r.amp_dtype] if r.amp_dtype != "auto" else [])
    words += ["--channels_last"] * r.channels_last + ["--gradient_checkpointing"] * r.gradient_checkpointing
    if r.compile_mode is not None:
        words += ["--use_compile", "--compile_mode", r.compile_mode]
    words += ["--use_ema"]
    if vram_budget_gb:
        words += ["--vram_budget_gb", f"{vram_budget_gb:g}"]
    return words


def command_text(words: list[str]) -> str:
    return shlex.join(words)
