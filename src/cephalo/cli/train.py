"""``cephalo train``: train a heatmap landmark detector (also ``python train_1024x1024.py``)."""

from __future__ import annotations

import argparse
import sys

from cephalo.cli.common import run_reporting_errors
from cephalo.engine.config import parse_args


def main(argv: list[str] | None = None, prog: str = "cephalo train") -> int:
    config = parse_args(argv, argparse.ArgumentParser(prog=prog, description=__doc__))
    from cephalo.engine.trainer import fit  # after parsing: --help stays instant

    def train() -> int:
        from cephalo.engine.oom import OutOfMemoryStop

        try:
            fit(config)
        except OutOfMemoryStop as e:  # the message says what to change; a traceback would bury it
            print(f"error: {e}", file=sys.stderr)
            return 3
        return 0

    return run_reporting_errors(
        train,
        "interrupted at once: the newest state is in the run folder's recovery.pt or last.pt; "
        "continue with cephalo train --resume <run folder>",
    )
