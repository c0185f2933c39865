"""``cephalo bench``: measure the speed-ups of the user's notes on this machine. Short training segments on the
built-in synthetic dataset, one configuration per technique, each in a fresh process; writes bench.md and
bench.json with the command, date and machine."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cephalo.bench.report import build_report, markdown, write_report
from cephalo.bench.run import BenchOptions, run_bench
from cephalo.bench.techniques import ROW_NAMES, parse_techniques
from cephalo.engine.augment import AUGMENTATION_LEVELS
from cephalo.models import MODEL_NAMES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure the training speed-up techniques on this machine",
                              description=__doc__)
    d = BenchOptions()
    p.add_argument("--model", choices=MODEL_NAMES, default=d.model)
    p.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), default=list(d.image_size))
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--gradient_accumulation_steps", type=int, default=d.gradient_accumulation_steps,
                   help="accumulation of the 'current' setup and the rows built on it (baseline: 1)")
    p.add_argument("--device", default=d.device, help="auto|cpu|cuda|cuda:N")
    p.add_argument("--num_workers", type=int, default=d.num_workers,
                   help="DataLoader workers of every row but 'dataloader' (which uses min(8, CPU cores))")
    p.add_argument("--augmentation", choices=AUGMENTATION_LEVELS, default=d.augmentation,
                   help="the user's augmentation; the light_augmentation row uses 'light' instead")
    p.add_argument("--compile_mode", choices=("default", "reduce-overhead", "max-autotune"), default=d.compile_mode)
    p.add_argument("--warmup_updates", type=int, default=d.warmup_updates,
                   help="optimizer updates run first and timed apart ('first updates s': compile time included)")
    p.add_argument("--measure_updates", type=int, default=d.measure_updates,
                   help="optimizer updates images/s is measured over")
    p.add_argument("--techniques", default="all", help=f"'all' or a comma list of: {', '.join(ROW_NAMES)}")
    p.add_argument("--output_dir", type=Path, help="where bench.md and bench.json go "
                                                   "(default: benchmarks/bench-<model>-<H>x<W>)")
    p.add_argument("--vram_budget_gb", type=float, help="cap each row's GPU memory at this many GiB (e.g. 8)")
    p.add_argument("--cache_dir", type=Path, help="where the synthetic dataset is cached (default: $CEPHALO_CACHE)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epoch_images", type=int, default=d.epoch_images,
                   help="images per epoch for the save-frequency figure (default 700: Aariz's training split)")
    p.add_argument("--row_timeout_s", type=float, default=d.row_timeout_s, help="give up on a row after this long")
    p.set_defaults(run=run)


def options_from(args: argparse.Namespace) -> BenchOptions:
    """Checked options; bad values raise ValueError (one 'error:' line)."""
    for name in ("batch_size", "gradient_accumulation_steps", "measure_updates", "epoch_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("warmup_updates", "num_workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    size = tuple(args.image_size)
    output_dir = args.output_dir or Path("benchmarks") / f"bench-{args.model}-{size[0]}x{size[1]}"
    return BenchOptions(model=args.model, image_size=size, batch_size=args.batch_size,
                        gradient_accumulation_steps=args.gradient_accumulation_steps, device=args.device,
                        num_workers=args.num_workers, augmentation=args.augmentation, compile_mode=args.compile_mode,
                        warmup_updates=args.warmup_updates, measure_updates=args.measure_updates,
                        techniques=tuple(parse_techniques(args.techniques)), output_dir=str(output_dir),
                        vram_budget_gb=args.vram_budget_gb,
                        cache_dir=str(args.cache_dir) if args.cache_dir else None, seed=args.seed,
                        epoch_images=args.epoch_images, row_timeout_s=args.row_timeout_s)


def command_line(o: BenchOptions, techniques: str) -> str:
    """The command with every option spelled out, so the run can be repeated even if defaults change."""
    words = ["cephalo", "bench", "--model", o.model, "--image_size", *map(str, o.image_size),
             "--batch_size", str(o.batch_size), "--gradient_accumulation_steps", str(o.gradient_accumulation_steps),
             "--device", o.device, "--num_workers", str(o.num_workers), "--augmentation", o.augmentation,
             "--compile_mode", o.compile_mode, "--warmup_updates", str(o.warmup_updates),
             "--measure_updates", str(o.measure_updates), "--techniques", techniques, "--output_dir", o.output_dir,
             "--seed", str(o.seed), "--epoch_images", str(o.epoch_images), "--row_timeout_s", f"{o.row_timeout_s:g}"]
    if o.vram_budget_gb is not None:
        words += ["--vram_budget_gb", f"{o.vram_budget_gb:g}"]
    if o.cache_dir:
        words += ["--cache_dir", o.cache_dir]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    rows, data_note, load = run_bench(options)
    report = build_report(rows, dict(vars(options)), command_line(options, args.techniques), data_note,
                          options.epoch_images, load)
    md_path, json_path = write_report(report, Path(options.output_dir))
    print()
    print(markdown(report))
    print(f"written: {md_path}, {json_path}")
    return 0
