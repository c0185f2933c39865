"""Training configuration: one dataclass, the ``cephalo train`` flags (spelled as in the user's command line), and
``--config FILE`` (JSON, or YAML when PyYAML is installed) whose values explicit flags override."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cephalo.datasets.sources import FORMATS
from cephalo.engine.augment import AUGMENTATION_LEVELS
from cephalo.models import MODEL_NAMES

# Memory settings for small GPUs, from the user's 8 GB notes (seed-requirements.md): a preset fills these options;
# values from --config and flags given on the command line override it.
PRESETS: dict[str, dict] = {
    "rtx3070ti": dict(batch_size=1, gradient_accumulation_steps=8, num_workers=2, mixed_precision=True, use_ema=True),
    "rtx3070ti-aggressive": dict(batch_size=2, gradient_accumulation_steps=4, num_workers=2, mixed_precision=True,
                                 use_ema=True),
    "rtx3060": dict(batch_size=2, gradient_accumulation_steps=4, num_workers=2, mixed_precision=True, use_ema=True),
    # any card: 8 images per update, the micro-batch measured on this GPU (engine/auto_batch.py)
    "auto": dict(batch_size=1, gradient_accumulation_steps=8, num_workers=2, mixed_precision=True, use_ema=True,
                 auto_micro_batch=True),
}


@dataclass
class TrainConfig:
    # data
    dataset_path: str = "synthetic"
    dataset_format: str | None = None
    train_split: str = "train"
    val_split: str | None = None  # None: the dataset's 'valid' split, else a seeded part of the training split
    val_fraction: float = 0.2
    skip_bad: bool = False
    cache_dir: str | None = None
    image_size: tuple[int, int] = (256, 256)
    # model and targets
    model: str = "hrnet_w18_small"
    pretrained: str | None = None
    head_stride: int = 2  # measured better than 4 on ISBI at 256² (benchmarks/training_isbi.md)
    sigma: float = 2.0
    augmentation: str = "full"  # measured better on ISBI and on the synthetic main job (benchmarks/)
    # optimisation
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    epochs: int = 20
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    # precision, EMA, speed
    preset: str | None = None
    mixed_precision: bool = False
    amp_dtype: str = "auto"
    use_ema: bool = False
    ema_decay: float = 0.999
    num_workers: int = 2
    pin_memory: bool = True  # page-locked batches (CUDA only): asynchronous copies
    prefetch_factor: int = 2
    persistent_workers: bool = True
    non_blocking: bool = True  # copy the next batch to the GPU on a side stream while the current one computes
    vram_budget_gb: float | None = None
    auto_micro_batch: bool = False
    use_compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    gradient_checkpointing: bool = False
    sync_bn: bool = False
    # loop
    early_stopping: bool = False
    patience: int = 20
    min_delta: float = 0.0
    monitor: str = "val_mre_mm"
    save_frequency: int = 1
    fused_optimizer: bool = False
    val_every: int = 1
    log_every: int = 10
    max_updates: int | None = None
    seed: int = 0
    deterministic: bool = False
    max_bad_updates: int = 20
    recovery_interval: int = 0  # optimizer updates between recovery checkpoints; 0: every --recovery_minutes
    recovery_minutes: float = 5.0
    device: str = "auto"
    output_dir: str = "runs"
    run_name: str | None = None
    resume: str | None = None
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_HELP = {
    "dataset_path": "dataset folder (Aariz, ISBI 2015), a CSV file, or 'synthetic'",
    "dataset_format": f"layout of --dataset_path: {'|'.join(FORMATS)} (default: detected)",
    "val_split": "validation split (default: the dataset's 'valid', else --val_fraction of the training split)",
    "image_size": "network input H W (letterboxed)",
    "model": f"one of {', '.join(MODEL_NAMES)} ('hrnet' is HRNet-W32)",
    "pretrained": "timm-format ImageNet weights (.safetensors or .pth) for the backbone",
    "head_stride": "output stride of the heatmaps: 4, 2 or 1",
    "augmentation": "none|light|full: random affine (landmarks moved with the image, those leaving it masked) and "
                    "intensity changes, applied in batch on the training device",
    "sigma": "Gaussian sigma of the target heatmaps, in heatmap pixels",
    "gradient_accumulation_steps": "micro-batches per optimizer update (effective batch = batch_size x this)",
    "warmup_epochs": "linear LR warm-up, then cosine decay to lr x min_lr_ratio",
    "preset": "8 GB settings: rtx3070ti (batch 1 x accumulation 8, fp16, EMA, 2 workers), rtx3070ti-aggressive "
              "(batch 2 x 4), rtx3060 (12 GB: batch 2 x 4), auto (8 images per update, the largest micro-batch that "
              "fits measured on this GPU); explicit flags override",
    "mixed_precision": "autocast: fp16 + GradScaler on CUDA, bf16 on CPU",
    "amp_dtype": "auto|fp16|bf16 for --mixed_precision",
    "use_ema": "keep an exponential moving average of the weights; validate and pick 'best' with it",
    "num_workers": "DataLoader worker processes reading the cache (0: in the training process)",
    "pin_memory": "page-locked host batches so copies to the GPU are asynchronous (CUDA; on by default, "
                  "--no_pin_memory to turn off)",
    "prefetch_factor": "batches each worker prepares ahead",
    "persistent_workers": "keep workers alive between epochs (on by default; --no_persistent_workers)",
    "non_blocking": "asynchronous host-to-GPU copies, the next batch copied on a side stream while the current one "
                    "computes (on by default; --no_non_blocking)",
    "vram_budget_gb": "cap this process's GPU memory at this many GiB (emulates a smaller card, e.g. 8)",
    "auto_micro_batch": "measure a few real steps and use the largest micro-batch that fits the GPU memory (or "
                        "--vram_budget_gb) with a 15 %% margin, keeping batch_size x accumulation",
    "use_compile": "torch.compile the model (falls back to eager with a warning where it cannot)",
    "compile_mode": "torch.compile mode: default, reduce-overhead (CUDA graphs) or max-autotune (slow to compile)",
    "channels_last": "channels_last memory format for the model and every batch",
    "early_stopping": "stop when --monitor has not improved for --patience validations",
    "monitor": "metric that picks 'best' and drives early stopping: val_mre_mm or val_loss",
    "sync_bn": "with several processes (torchrun): BatchNorm statistics over all of them (SyncBatchNorm)",
    "min_delta": "an improvement of --monitor smaller than this does not count (early stopping, best.pt)",
    "save_frequency": "write last.pt every N epochs (and at the end); best.pt and recovery.pt as usual",
    "fused_optimizer": "fused AdamW kernels on CUDA (foreach elsewhere); the choice is printed",
    "max_updates": "stop after this many optimizer updates (quick runs, benchmarks)",
    "device": "auto|cpu|cuda|cuda:N",
    "resume": "continue a run: a checkpoint, a run folder (its newest valid checkpoint), or 'auto' (--run_name's "
              "folder, else the newest run in --output_dir)",
    "deterministic": "deterministic algorithms (repeatable runs on CPU; on GPU as far as cuDNN allows, slower)",
    "max_bad_updates": "stop after this many updates in a row with non-finite loss or gradients (each is skipped)",
    "recovery_interval": "write recovery.pt every N optimizer updates (0: every --recovery_minutes)",
    "recovery_minutes": "minutes of training between recovery checkpoints when --recovery_interval is 0",
}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``cephalo train`` flags, generated from :class:`TrainConfig` so names and defaults cannot drift."""
    parser = parser or argparse.ArgumentParser(prog="cephalo train")
    parser.add_argument("--config", type=Path, help="JSON/YAML file of these options; explicit flags win")
    for f in dataclasses.fields(TrainConfig):
        flag, default, help_text = f"--{f.name}", f.default, _HELP.get(f.name)
        if f.name == "progress":
            parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bars")
        elif default is True:  # on by default: --name (accepted, changes nothing) and --no_name
            parser.add_argument(flag, action="store_true", default=True, help=help_text)
            parser.add_argument(f"--no_{f.name}", dest=f.name, action="store_false", help=argparse.SUPPRESS)
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name == "image_size":
            parser.add_argument(flag, type=int, nargs=2, metavar=("H", "W"), default=default, help=help_text)
        else:
            kind = {"max_updates": int, "vram_budget_gb": float}.get(f.name) or \
                {int: int, float: float}.get(type(default), str)
            choices = {"model": MODEL_NAMES, "dataset_format": FORMATS, "amp_dtype": ("auto", "fp16", "bf16"),
                       "monitor": ("val_mre_mm", "val_loss"), "head_stride": (1, 2, 4),
                       "augmentation": AUGMENTATION_LEVELS, "preset": tuple(PRESETS),
                       "compile_mode": ("default", "reduce-overhead", "max-autotune")}.get(f.name)
            parser.add_argument(flag, type=kind, default=default, choices=choices, help=help_text)
    return parser


def load_config_file(path: Path) -> dict:
    """Options from a JSON or YAML file, checked against the known option names."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or give a .json file") from None
        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return values


def parse_args(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> TrainConfig:
    """Flags -> :class:`TrainConfig`. Precedence: explicit flags > ``--config`` file > ``--preset`` > defaults."""
    parser = build_parser(parser)
    args = parser.parse_args(argv)
    file_values = load_config_file(args.config) if args.config is not None else {}
    preset = args.preset or file_values.get("preset")
    if preset or file_values:
        if preset:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            parser.set_defaults(**PRESETS[preset])
        parser.set_defaults(**file_values)
        args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k != "config"}
    values["image_size"] = tuple(values["image_size"])
    return TrainConfig(**values)
