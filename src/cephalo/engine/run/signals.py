"""Ctrl+C and SIGTERM as a request to stop cleanly after the current optimizer update."""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """While active, the first SIGINT/SIGTERM sets :attr:`requested` (the loop saves and exits at the next update);
    a second one interrupts at once. Handlers are restored on exit; outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: stopping after this update and saving a recovery checkpoint "
              "(press Ctrl+C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
