"""Training configuration: one dataclass whose fields are the ``cephalo train`` flags (spelled as in the user's
command line, each with its default, type and help), presets, and ``--config FILE`` (JSON, or YAML when PyYAML is
installed) whose values explicit flags override."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cephalo.checks import (
    above,
    at_least,
    between,
    context_factor,
    device_name,
    duration_seconds,
    existing_file,
    multiple_of,
    resume_source,
    weights_source,
    writable_folder,
)
from cephalo.flags import Parser, Typed, add_flags, option, option_fields, values_from
from cephalo.models import MODEL_NAMES
from cephalo.preprocessing.options import DEFAULT_IMAGE_SIZE, DataOptions

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
AUGMENTATION_LEVELS = ("none", "light", "full")  # the presets of engine/step/augment.py

# Memory settings for small GPUs, from the user's notes on 8 GB cards: a preset fills these options;
# values from --config and flags given on the command line override it.
PRESETS: dict[str, dict] = {
    "rtx3070ti": dict(batch_size=1, gradient_accumulation_steps=8, num_workers=2, mixed_precision=True, use_ema=True),
    "rtx3070ti-aggressive": dict(batch_size=2, gradient_accumulation_steps=4, num_workers=2, mixed_precision=True,
                                 use_ema=True),
    "rtx3060": dict(batch_size=2, gradient_accumulation_steps=4, num_workers=2, mixed_precision=True, use_ema=True),
    # any card: 8 images per update, the micro-batch measured on this GPU (engine/gpu_memory.py)
    "auto": dict(batch_size=1, gradient_accumulation_steps=8, num_workers=2, mixed_precision=True, use_ema=True,
                 auto_micro_batch=True),
}


DEFAULT_SIGMA = 2.0  # heatmap pixels


@dataclass
class TrainConfig(DataOptions):
    """Every option of a training run; the data options come from `DataOptions` (the options every command shares)."""

    train_split: str = option("train", "split to train on")
    val_split: str | None = option(None, "validation split (default: the dataset's 'valid', else --val_fraction of "
                                   "the training split)")
    # model and targets
    model: str = option("hrnet_w18_small", "network: one of " + ", ".join(MODEL_NAMES) + " ('hrnet' is HRNet-W32)",
                        choices=MODEL_NAMES)
    pretrained: str | None = option(None, "ImageNet weights for the backbone: a timm-format file (.safetensors or "
                                    ".pth), or timm's name (hrnet_w32.ms_in1k: from the Hugging Face cache, else "
                                    "downloaded; needs huggingface_hub)", check=weights_source)
    head_stride: int = option(2, "output stride of the heatmaps: 4, 2 or 1", choices=(1, 2, 4))  # 2: measured
    # better than 4 on ISBI at 256² (benchmarks/training_isbi.md)
    sigma: float = option(DEFAULT_SIGMA, "Gaussian sigma of the target heatmaps, in heatmap pixels", check=above(0))
    sigma_mm: float | None = option(None, "the targets' sigma in mm of anatomy instead (both stages): converted once "
                                    "per run into heatmap pixels from the training images' median pixel spacing, "
                                    "the letterbox scale and the stride, so a run at 1024² sees the same anatomy "
                                    "per target as one at 256² (replaces --sigma)", type=float, check=above(0))
    augmentation: str = option("full", "none|light|full: random affine (landmarks moved with the image, those "
                               "leaving it masked) and intensity changes, applied in batch on the training device",
                               choices=AUGMENTATION_LEVELS)  # full: measured better on ISBI and the main job
    # optimisation
    batch_size: int = option(8, "images per forward pass (the micro-batch)", check=at_least(1))
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer update (effective batch = "
                                              "batch_size x this)", check=at_least(1))
    epochs: int = option(20, "epochs to train", check=at_least(1))
    lr: float = option(2e-3, "peak learning rate of AdamW", check=at_least(0))
    weight_decay: float = option(1e-4, "AdamW weight decay (not on biases and normalisation weights)",
                                 check=at_least(0))
    warmup_epochs: float = option(1.0, "linear LR warm-up, then cosine decay to lr x min_lr_ratio", check=at_least(0))
    min_lr_ratio: float = option(0.01, "the learning rate at the end, as a share of --lr", check=between(0, 1))
    # precision, EMA, speed
    preset: str | None = option(None, "8 GB settings: rtx3070ti (batch 1 x accumulation 8, fp16, EMA, 2 workers), "
                                "rtx3070ti-aggressive (batch 2 x 4), rtx3060 (12 GB: batch 2 x 4), auto (8 images per "
                                "update, the largest micro-batch that fits measured on this GPU); explicit flags "
                                "override", choices=tuple(PRESETS))
    mixed_precision: bool = option(False, "autocast: fp16 + GradScaler on CUDA, bf16 on CPU")
    amp_dtype: str = option("auto", "auto|fp16|bf16 for --mixed_precision", choices=("auto", "fp16", "bf16"))
    use_ema: bool = option(False, "keep an exponential moving average of the weights; validate and pick 'best' "
                           "with it")
    ema_decay: float = option(0.999, "EMA decay per optimizer update (warmed up from 0.1)",
                              check=between(0, 1, high_open=True))
    num_workers: int = option(2, "DataLoader worker processes reading the cache (0: in the training process)",
                              check=at_least(0))
    pin_memory: bool = option(True, "page-locked host batches so copies to the GPU are asynchronous (CUDA; on by "
                              "default, --no_pin_memory to turn off)")
    prefetch_factor: int = option(2, "batches each worker prepares ahead", check=at_least(1))
    persistent_workers: bool = option(True, "keep workers alive between epochs (on by default; "
                                      "--no_persistent_workers)")
    non_blocking: bool = option(True, "asynchronous host-to-GPU copies, the next batch copied on a side stream "
                                "while the current one computes (on by default; --no_non_blocking)")
    vram_budget_gb: float | None = option(None, "cap this process's GPU memory at this many GiB (emulates a smaller "
                                          "card, e.g. 8)", type=float, check=above(0))
    auto_micro_batch: bool = option(False, "measure a few real steps and use the largest micro-batch that fits the "
                                    "GPU memory (or --vram_budget_gb) with a 15 %% margin, keeping batch_size x "
                                    "accumulation")
    use_compile: bool = option(False, "torch.compile the model (falls back to eager with a warning where it "
                               "cannot)")
    compile_mode: str = option("default", "torch.compile mode: default, reduce-overhead (CUDA graphs) or "
                               "max-autotune (slow to compile)", choices=COMPILE_MODES)
    channels_last: bool = option(False, "channels_last memory format for the model and every batch")
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, more time")
    sync_bn: bool = option(False, "with several processes (torchrun): BatchNorm statistics over all of them "
                           "(SyncBatchNorm)")
    # loop
    early_stopping: bool = option(False, "stop when --monitor has not improved for --patience validations")
    patience: int = option(20, "validations without improvement before early stopping", check=at_least(1))
    min_delta: float = option(0.0, "an improvement of --monitor smaller than this does not count (early stopping, "
                              "best.pt)", check=at_least(0))
    monitor: str = option("val_mre_mm", "metric that picks 'best' and drives early stopping: val_mre_mm or "
                          "val_loss", choices=("val_mre_mm", "val_loss"))
    save_frequency: int = option(1, "write last.pt every N epochs (and at the end); best.pt and recovery.pt as "
                                 "usual", check=at_least(1))
    fused_optimizer: bool = option(False, "fused AdamW kernels on CUDA (foreach elsewhere); the choice is printed")
    val_every: int = option(1, "validate every N epochs (and after the last)", check=at_least(1))
    log_every: int = option(10, "refresh the progress line every N optimizer updates", check=at_least(1))
    max_updates: int | None = option(None, "stop after this many optimizer updates (quick runs, benchmarks)",
                                     type=int, check=at_least(1))
    time_budget: float | None = option(None, "end the whole run within this wall-clock time (90s, 25m, 8h, 1h30m): "
                                       "the first epoch's measured time sets the number of epochs and the LR "
                                       "schedule runs over them (--epochs is then not used; --max_updates still caps "
                                       "and --early_stopping may stop sooner)", type=duration_seconds,
                                       check=above(0), metavar="TIME")
    # the local (refinement) stage: benchmarks/refine_cv.md measured these defaults; its optimisation options have
    # the values the global stage's had when it shared them
    refine: bool = option(False, "after the global model, train a local model that corrects each landmark from a "
                          "patch of the original image around it (best.pt then carries both stages)")
    refine_from: str | None = option(None, "add a local stage to the global model of this checkpoint (no global "
                                     "training; the data options say the images, as for a new run)",
                                     check=existing_file)
    patch_size: int = option(64, "local stage: patch side in pixels", check=multiple_of(32, "the networks "
                             "downsample 32x"))
    patch_mm: float = option(0.2, "local stage: patch pixel size in mm (patches are resampled to it, whatever the "
                             "image's spacing)", check=above(0))
    patch_context: int = option(0, "local stage: add a second channel to each patch with N times its field of view "
                                "at N times coarser pixels, for landmarks recognised by their surroundings "
                                "(0: none)", check=context_factor)
    local_model: str = option("hrnet_w18_small", "local stage: network", choices=MODEL_NAMES)
    local_epochs: int = option(15, "local stage: epochs over the training images", check=at_least(1))
    local_batch: int = option(4, "local stage: images per forward pass (each brings one patch per landmark)",
                              check=at_least(1))
    local_accumulation_steps: int = option(1, "local stage: micro-batches per optimizer update", check=at_least(1))
    local_lr: float = option(2e-3, "local stage: peak learning rate of AdamW", check=at_least(0))
    local_warmup_epochs: float = option(1.0, "local stage: linear LR warm-up in epochs, then cosine decay to "
                                        "local_lr x min_lr_ratio", check=at_least(0))
    local_weight_decay: float = option(1e-4, "local stage: AdamW weight decay", check=at_least(0))
    local_augmentation: str = option("light", "local stage: none|light|full (the patches are already moved by the "
                                     "jitter)", choices=AUGMENTATION_LEVELS)
    global_share: float = option(0.5, "with --refine and --time_budget: the global stage's share of the budget, the "
                                 "local stage has the rest", check=between(0.05, 0.95))
    deterministic: bool = option(False, "deterministic algorithms (repeatable runs on CPU; on GPU as far as cuDNN "
                                 "allows, slower)")
    max_bad_updates: int = option(20, "stop after this many updates in a row with non-finite loss or gradients "
                                  "(each is skipped)", check=at_least(1))
    recovery_interval: int = option(0, "write recovery.pt every N optimizer updates (0: every --recovery_minutes)",
                                    check=at_least(0))
    recovery_minutes: float = option(5.0, "minutes of training between recovery checkpoints when "
                                     "--recovery_interval is 0", check=above(0))
    device: str = option("auto", "auto|cpu|cuda|cuda:N", check=device_name)
    output_dir: str = option("runs", "folder of the run folders", check=writable_folder)
    run_name: str | None = option(None, "the run folder's name (default: model, dataset and time)")
    resume: str | None = option(None, "continue a run: a checkpoint, a run folder (its newest valid checkpoint), or "
                                "'auto' (--run_name's folder, else the newest run in --output_dir)",
                                check=resume_source)
    progress: bool = option(True, "no progress bars", flag="--no_progress")

    def check(self) -> None:
        super().check()
        if self.sigma_mm is not None and self.sigma != DEFAULT_SIGMA:
            raise ValueError(f"--sigma {self.sigma:g} and --sigma_mm {self.sigma_mm:g} both set the targets' width: "
                             "give one (--sigma in heatmap pixels, --sigma_mm in mm of anatomy)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config as :meth:`to_dict` (a checkpoint's ``config``) wrote it; options it does not know are left out."""
        values = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        for local, shared in (("local_lr", "lr"), ("local_warmup_epochs", "warmup_epochs"),
                              ("local_weight_decay", "weight_decay")):
            if local not in values and shared in values:  # written before 2026-12-05: the stages shared them
                values[local] = values[shared]
        return cls(**{**values, "image_size": tuple(values.get("image_size", DEFAULT_IMAGE_SIZE))})


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``cephalo train`` flags, generated from :class:`TrainConfig` so names, defaults and help cannot drift."""
    parser = parser or Parser(prog="cephalo train")
    parser.add_argument("--config", type=Typed(Path, existing_file),
                        help="JSON/YAML file of these options; explicit flags win")
    add_flags(parser, TrainConfig)
    return parser


def load_config_file(path: Path) -> dict:
    """Options from a JSON or YAML file, checked against the known option names; ``ValueError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ValueError(f"--config {path}: {e.strerror or e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or give a .json file") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected an object of option names and values, found {type(values).__name__}")
    if isinstance(values.get("time_budget"), str):  # "25m" as on the command line
        try:
            values["time_budget"] = duration_seconds(values["time_budget"])
        except ValueError:
            raise ValueError(f"{path}: time_budget {values['time_budget']!r} is not {duration_seconds.expects}") from None
    if isinstance(values.get("image_size"), list):
        values["image_size"] = tuple(values["image_size"])
    known = {f.name for f in option_fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return values


def given_flags(argv: list[str]) -> set[str]:
    """The options ``argv`` sets: its flags, the keys of its ``--config`` file and those of its ``--preset``."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    args = vars(parser.parse_known_args(argv)[0])
    given = set(args) - {"config", "help"}
    if args.get("config") is not None:
        file_values = load_config_file(args["config"])
        given |= set(file_values)
        args.setdefault("preset", file_values.get("preset"))
    if args.get("preset") in PRESETS:
        given |= set(PRESETS[args["preset"]])
    return given


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
    config = TrainConfig(**values_from(args, TrainConfig))
    config.check()  # the values of a --config file or a preset too
    return config
