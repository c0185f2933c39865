"""The benchmark's rows: which TrainConfig overrides each technique is, the gain the user's notes claim for it,
and the pure arithmetic of the rows that are derived rather than timed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cephalo.models import LIGHTER_MODEL

# The user's claims (their notes, table "speed-ups they want"), quoted, never used as numbers.
CLAIMED = {
    "compile": "30–50 %",
    "channels_last": "10–20 %",
    "fused_optimizer": "5–15 %",
    "dataloader": "5–10 %",
    "gradient_checkpointing": "~30–40 % less VRAM, forward ~20 % slower",
    "early_stopping": "10–30 % of time",
    "save_frequency": "2–5 %",
    "light_augmentation": "10–20 %",
    "non_blocking": "2–5 %",
    "lighter_model": "20–40 %",
    "all_safe": "no claim for this set (stage 1 = compile + channels_last + early stopping + DataLoader: 40–60 %)",
    "all_safe_eager": "no claim (what a run gets where compiling is not possible, e.g. Windows without Triton)",
}

# Row name -> number in the user's table ("" for the reference rows).
NUMBERS = {"baseline": "", "current": "", "compile": "1", "channels_last": "2", "fused_optimizer": "3",
           "dataloader": "4", "gradient_checkpointing": "5", "early_stopping": "6", "save_frequency": "7",
           "light_augmentation": "8", "non_blocking": "9", "lighter_model": "10", "all_safe": "1–4, 9",
           "all_safe_eager": "2–4, 9", "local_stage": ""}
ROW_NAMES = tuple(NUMBERS)


# Techniques that change nothing about the results: the all_safe row combines them.
SAFE = ("compile", "channels_last", "fused_optimizer", "dataloader", "non_blocking")

# What a technique does on a CPU run (shown in its note when the rows ran on the CPU).
CPU_NOTES = {"fused_optimizer": "on CPU this changes nothing (fused AdamW is CUDA only)",
             "non_blocking": "on CPU this changes nothing (pinned memory and async copies are CUDA only)",
             "dataloader": "pin_memory does nothing on CPU; only the workers and prefetch count here",
             "gradient_checkpointing": "on CPU the RSS growth also holds optimizer state and allocator caches, "
                                       "not only activations"}

EARLY_STOPPING_NOTE = "saves epochs, not step time: its gain depends on when validation stops improving"


@dataclass
class Row:
    """One line of the table: ``overrides`` is None for rows that are not timed (then ``note`` says why)."""

    name: str
    overrides: dict | None
    note: str = ""
    time_save: bool = False  # the current row also times one checkpoint write (row 7)
    extra: dict = field(default_factory=dict)

    @property
    def number(self) -> str:
        return NUMBERS[self.name]

    @property
    def claimed(self) -> str:
        return CLAIMED.get(self.name, "—")


def parse_techniques(text: str) -> list[str]:
    """``all`` or a comma list of row names -> the row names in table order; unknown names raise ValueError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--techniques is empty; give 'all' or a comma list of: {', '.join(ROW_NAMES)}")
    if names == ["all"]:
        return list(ROW_NAMES)
    unknown = [n for n in names if n not in ROW_NAMES]
    if unknown:
        raise ValueError(f"--techniques: unknown name(s) {', '.join(unknown)}; valid: all, {', '.join(ROW_NAMES)}")
    return [n for n in ROW_NAMES if n in names]


def save_frequency_gain(save_seconds: float, images_per_s: float, epoch_images: int, every: int = 5) -> dict:
    """Row 7 from a measured save: an epoch of ``epoch_images`` at ``images_per_s`` plus one save; ``share`` is the
    part of that epoch's time the save takes, ``gain`` the time saved by saving every ``every`` epochs instead of
    every epoch ((every - 1) / every of the saves are left out)."""
    epoch_seconds = epoch_images / images_per_s
    share = save_seconds / (epoch_seconds + save_seconds)
    return {"epoch_seconds": epoch_seconds, "share": share, "gain": share * (every - 1) / every}


def technique_overrides(name: str, model: str, augmentation: str, compile_mode: str) -> tuple[dict | None, str]:
    """Overrides a technique adds to the current setup, and its note; None where it cannot be measured here."""
    workers = min(8, os.cpu_count() or 1)
    if name == "compile":
        return {"use_compile": True, "compile_mode": compile_mode}, ""  # setup's note names the mode
    if name == "channels_last":
        return {"channels_last": True}, ""
    if name == "fused_optimizer":
        return {"fused_optimizer": True}, ""
    if name == "dataloader":
        return {"pin_memory": True, "prefetch_factor": 4, "num_workers": workers, "persistent_workers": True}, \
            f"pin_memory, prefetch_factor 4, {workers} workers, persistent_workers"
    if name == "gradient_checkpointing":
        return {"gradient_checkpointing": True}, "memory technique: its figure is the memory change vs current"
    if name == "light_augmentation":
        if augmentation == "light":
            return None, "not measured: the bench already uses --augmentation light (same as current)"
        return {"augmentation": "light"}, f"augmentation light instead of {augmentation}; may change accuracy"
    if name == "non_blocking":
        return {"non_blocking": True, "pin_memory": True}, \
            "with pin_memory: without pinned memory nothing is asynchronous"
    if name == "lighter_model":
        lighter = LIGHTER_MODEL.get(model)
        if lighter is None:
            return None, f"not measured: cephalo has no lighter model than {model}"
        return {"model": lighter}, f"{model} -> {lighter}; may change accuracy"
    raise ValueError(f"not a technique: {name}")


def build_rows(names: list[str], common: dict, accumulation: int, compile_mode: str) -> list[Row]:
    """The rows ``names`` asks for. ``common`` holds the settings every row shares (model, size, batch, device, ...,
    the user's augmentation); baseline is fp32 eager without accumulation, current adds mixed precision, EMA and
    accumulation, every other row adds one technique (or all safe ones) to current."""
    baseline = {**common, "mixed_precision": False, "use_ema": False, "gradient_accumulation_steps": 1,
                "pin_memory": False, "persistent_workers": False, "non_blocking": False, "prefetch_factor": 2,
                "use_compile": False, "channels_last": False, "fused_optimizer": False,
                "gradient_checkpointing": False, "early_stopping": False}
    current = {**baseline, "mixed_precision": True, "use_ema": True, "gradient_accumulation_steps": accumulation}
    rows = []
    for name in names:
        if name == "baseline":
            rows.append(Row(name, baseline, "fp32, eager, no accumulation, no EMA"))
        elif name == "current":
            rows.append(Row(name, current, f"mixed precision + EMA + accumulation {accumulation}",
                            time_save="save_frequency" in names))
        elif name == "early_stopping":
            rows.append(Row(name, None, f"not measured: {EARLY_STOPPING_NOTE}"))
        elif name == "save_frequency":
            rows.append(Row(name, None, "derived from the measured save time (current row)"))
        elif name == "local_stage":
            rows.append(Row(name, {**current, "refine": True}, (
                f"the local stage (--refine) with the current settings: --local_model {common['local_model']}, "
                f"--patch_size {common['patch_size']}, --local_batch {common['local_batch']}; its images/s are "
                "training images, each bringing one patch per landmark")))
        elif name in ("all_safe", "all_safe_eager"):
            merged, techniques = dict(current), [s for s in SAFE if name == "all_safe" or s != "compile"]
            for technique in techniques:
                merged.update(technique_overrides(technique, common["model"], common["augmentation"],
                                                  compile_mode)[0] or {})
            rows.append(Row(name, merged, "current + " + " + ".join(techniques)))
        else:
            overrides, note = technique_overrides(name, common["model"], common["augmentation"], compile_mode)
            rows.append(Row(name, None if overrides is None else {**current, **overrides}, note))
    return rows
