"""Progress on a terminal, plain lines in a log.

On a terminal a tqdm bar redraws itself in place with carriage returns; written to a file (``cephalo train >
log.txt 2>&1``, nohup, SLURM) every redraw would stay in the log. :func:`progress_bar` gives a tqdm bar when
stderr is a terminal and otherwise a :class:`LineProgress` with the same small interface (iterate, ``update``,
``set_postfix_str``, ``set_postfix``, ``write``, ``close``) that prints a whole line at most every
:data:`LINE_INTERVAL_S` seconds, and a last one at the end of work that took longer than that (short work prints
nothing: the command's own summary line follows).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm

LINE_INTERVAL_S = 30.0  # off a terminal: at most one progress line this often (and the last one)


def on_terminal() -> bool:
    """Whether progress can be drawn in place: stderr (where progress goes) is a terminal."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, enabled: bool = True, leave: bool = False):
    """A tqdm bar on a terminal, a :class:`LineProgress` elsewhere; disabled (silent) when ``enabled`` is False."""
    if enabled and on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, enabled=enabled)


class LineProgress:
    """What a progress bar shows, as plain lines on stderr: ``desc: n/total unit (rate/s) | postfix``."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, enabled: bool = True):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.start_n = initial
        self.enabled, self.postfix, self.closed = enabled, "", False
        self.start = self.last_line = time.monotonic()
        self.printed_n: int | None = None

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_line >= LINE_INTERVAL_S:
            self._line()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        """A message between progress lines (tqdm's ``write``): on stdout, like tqdm's."""
        print(text, flush=True)

    def close(self) -> None:
        if not self.closed and self.printed_n is not None and self.printed_n != self.n:
            self._line()
        self.closed = True

    def _line(self) -> None:
        self.last_line, self.printed_n = time.monotonic(), self.n
        if not self.enabled:
            return
        elapsed = self.last_line - self.start
        done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        rate = f", {(self.n - self.start_n) / elapsed:.2f} {self.unit}/s" if elapsed > 0 else ""
        print(f"{self.desc}: {done} {self.unit}{rate}" + (f" | {self.postfix}" if self.postfix else ""),
              file=sys.stderr, flush=True)
