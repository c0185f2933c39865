"""``cephalo doctor``: prove on this machine that the fast training paths compute what the plain one does, measure
what they buy, and print the settings for this card (written to doctor.json with every figure). Exit code 1 if
any check FAILs; a setting that does not fit the GPU is a result, not a failure."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cephalo.atomic import write_text
from cephalo.doctor.report import failed, summary_line, table_markdown, table_text
from cephalo.doctor.run import DoctorOptions, DoctorResult, run_doctor
from cephalo.flags import add_flags, values_from


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check the fast training paths on this machine and pick their settings",
                              description=__doc__)
    add_flags(p, DoctorOptions)
    p.set_defaults(run=run)


def markdown(result: DoctorResult, command: str) -> str:
    return "\n".join([f"# cephalo doctor\n\n`{command}`\n", table_markdown(result.checks), "",
                      f"{summary_line(result.checks)}\n", "Recommended for this machine (add your own --epochs, "
                      f"--lr, ...):\n\n```\n{result.command}\n```\n"])


def run(args: argparse.Namespace) -> int:
    options = DoctorOptions(**values_from(args, DoctorOptions))
    command = shlex.join(["cephalo", "doctor", *sys.argv[2:]]) if sys.argv[1:2] == ["doctor"] else "cephalo doctor"
    result = run_doctor(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "doctor.json", json.dumps({"command": command, **result.to_dict()}, indent=2, default=str))
    write_text(out / "doctor.md", markdown(result, command))
    print()
    print(table_text(result.checks))
    print(f"\n{summary_line(result.checks)}")
    print(f"recommended for this machine (add your own --epochs, --lr, ...):\n  {result.command}")
    print(f"written: {out / 'doctor.md'}, {out / 'doctor.json'}")
    return 1 if failed(result.checks) else 0
