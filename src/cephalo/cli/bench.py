"""``cephalo bench``: measure the speed-ups of the user's notes on this machine. Short training segments on the
built-in synthetic dataset, one configuration per technique, each in a fresh process; writes bench.md and
bench.json with the command, date and machine."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path

from cephalo.bench.report import build_report, markdown, write_report
from cephalo.bench.run import TRAINING_DEFAULTS, TRAINING_FLAGS, BenchOptions, run_bench
from cephalo.bench.techniques import parse_techniques
from cephalo.engine.config import TrainConfig
from cephalo.flags import add_flags, flag_words, values_from


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure the training speed-up techniques on this machine",
                              description=__doc__)
    training = p.add_argument_group("training", "as in cephalo train, shared by every row; except that the "
                                    "baseline row runs without accumulation, the dataloader row with min(8, CPU "
                                    "cores) workers and the light_augmentation row with --augmentation light")
    add_flags(training, TrainConfig, TRAINING_FLAGS, defaults=TRAINING_DEFAULTS)
    add_flags(p.add_argument_group("benchmark"), BenchOptions)
    p.set_defaults(run=run)


def options_from(args: argparse.Namespace) -> BenchOptions:
    """The options as parsed (each flag checked by its own type); an unknown technique raises ValueError."""
    parse_techniques(args.techniques)  # an unknown name is an error now, not after the first rows ran
    options = BenchOptions(**values_from(args, BenchOptions), training=values_from(args, TrainConfig, TRAINING_FLAGS))
    if options.output_dir is None:
        h, w = options.training["image_size"]
        options = dataclasses.replace(options, output_dir=str(Path("benchmarks") / f"bench-{args.model}-{h}x{w}"))
    return options


def command_line(o: BenchOptions) -> str:
    """The command with every option spelled out, so the run can be repeated even if defaults change."""
    own = {f.name: getattr(o, f.name) for f in dataclasses.fields(BenchOptions) if f.name != "training"}
    return shlex.join(["cephalo", "bench", *flag_words(TrainConfig, o.training), *flag_words(BenchOptions, own)])


def run(args: argparse.Namespace) -> int:
    options = options_from(args)

    def report_of(rows: list, data_note: str, load: dict) -> dict:
        return build_report(rows, options.settings(), command_line(options), data_note, options.epoch_images, load)

    # the report is rewritten after every row: a run stopped part-way (a timeout, Ctrl+C) keeps the rows it measured
    rows, data_note, load = run_bench(options, lambda *done: write_report(report_of(*done), Path(options.output_dir)))
    report = report_of(rows, data_note, load)
    md_path, json_path = write_report(report, Path(options.output_dir))
    print()
    print(markdown(report))
    print(f"written: {md_path}, {json_path}")
    return 0
