"""``cephalo train``: train a heatmap landmark detector (also ``python train_1024x1024.py``)."""

from __future__ import annotations

import argparse
import os
import sys

from cephalo.engine.config import parse_args


def main(argv: list[str] | None = None, prog: str = "cephalo train") -> int:
    config = parse_args(argv, argparse.ArgumentParser(prog=prog, description=__doc__))
    from cephalo.engine.trainer import fit  # after parsing: --help stays instant

    try:
        fit(config)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("CEPHALO_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch is in last.pt; continue with --resume <run>/last.pt",
              file=sys.stderr)
        return 130
    return 0
