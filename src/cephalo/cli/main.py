"""The ``cephalo`` command."""

from __future__ import annotations

import sys

from cephalo import __version__
from cephalo.cli import analyze, baseline, bench, calibrate, doctor, evaluate, export, predict, prepare
from cephalo.cli.errors import report_errors, strip_debug
from cephalo.flags import Parser

INTERRUPTED = "interrupted: what was finished is kept; run the same command again to continue"


def build_parser() -> Parser:
    parser = Parser(prog="cephalo", description="Cephalometric landmark detection: train, predict, evaluate, export. "
                    "--debug (anywhere) shows the traceback behind an error.")
    parser.add_argument("--version", action="version", version=f"cephalo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers.add_parser("train", help="train a landmark detector (cephalo train --help)", add_help=False)
    for module in (predict, evaluate, analyze, calibrate, export, prepare, baseline, bench, doctor):
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path that is not valid UTF-8 must not crash an error message
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # its own parser: flags generated from TrainConfig, plus --config files
        from cephalo.cli.train import main as train_main

        return train_main(argv[1:])
    argv, debug = strip_debug(argv)

    def run() -> int:
        args = build_parser().parse_args(argv)
        args.argv = ["cephalo", *argv]  # what the user typed, for the records a command writes (predict's run.json)
        return args.run(args)

    return report_errors(run, INTERRUPTED, debug)


if __name__ == "__main__":
    raise SystemExit(main())
