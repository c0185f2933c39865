"""``cephalo train``: train a heatmap landmark detector (also ``python train_1024x1024.py``)."""

from __future__ import annotations

import sys

from cephalo.cli.errors import PARTIAL, report_errors, strip_debug
from cephalo.flags import Parser

INTERRUPTED = ("interrupted at once: the newest state is in the run folder's recovery.pt or last.pt "
               "(local_recovery.pt or local_last.pt in a local stage); continue with cephalo train --resume <run folder>")


def main(argv: list[str] | None = None, prog: str = "cephalo train") -> int:
    argv, debug = strip_debug(list(sys.argv[1:] if argv is None else argv))

    def train() -> int:
        from cephalo.engine.config import given_flags, parse_args

        config = parse_args(argv, Parser(prog=prog, description=__doc__ + " --debug shows the traceback behind "
                                         "an error."))
        from cephalo.engine.run.pipeline import train as train_run  # after parsing: --help stays instant

        result = train_run(config, given=given_flags(argv))
        return 0 if result.interrupted or result.best_written else PARTIAL

    return report_errors(train, INTERRUPTED, debug)
