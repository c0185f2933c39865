"""The one error reporter of every command: what a user can fix becomes one ``error:`` line with the file and the
remedy, and a documented exit code, instead of a traceback (``--debug`` or ``CEPHALO_DEBUG=1`` shows it).

Exit codes (also in the docs, "Guarantees and exit codes"):

    0    done
    1    done in part, or stopped by the environment: some images could not be predicted, a file could not be
         written (full disk, read-only or unwritable folder), a run ended without a best.pt, an export failed its
         self-check
    2    usage and input errors: a bad flag or value, a missing or unreadable dataset, image, checkpoint or file
    3    out of GPU memory even at micro-batch 1 with gradient checkpointing (the message lists the remedies)
    4    training stopped on non-finite numbers (nothing non-finite was saved)
    130  interrupted (Ctrl+C)
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from cephalo.atomic import WriteError

USER_ERROR, PARTIAL, OUT_OF_MEMORY, NON_FINITE, INTERRUPTED = 2, 1, 3, 4, 130
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another folder",
    errno.EROFS: "the file system is read-only: choose a folder you can write",
    errno.EACCES: "no permission: choose a folder you can write",
    errno.EPERM: "no permission: choose a folder you can write",
    errno.EISDIR: "a folder is in the way of a file: choose another name",
    errno.ENOTDIR: "a file is in the way of a folder: choose another name",
    errno.EEXIST: "a file is in the way: choose another name",
}


def strip_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether it was there (or ``CEPHALO_DEBUG`` is set)."""
    return [a for a in argv if a != "--debug"], "--debug" in argv or bool(os.environ.get("CEPHALO_DEBUG"))


def report_errors(action: Callable[[], int], on_interrupt: str, debug: bool = False) -> int:
    """Run a command and map each family of errors to one ``error:`` line and its exit code."""
    from cephalo.engine.runtime.finite import NonFiniteError  # the engine only once a command runs
    from cephalo.engine.step.oom import OutOfMemoryStop

    try:
        return action()
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2, its one line already printed)
        return e.code if isinstance(e.code, int) else USER_ERROR
    except KeyboardInterrupt:
        print(on_interrupt, file=sys.stderr)
        return INTERRUPTED
    except Exception as e:
        if debug:
            raise
        code, message = _classify(e, OutOfMemoryStop, NonFiniteError)
        if code is None:
            raise  # not a user error: a bug, whose traceback is the report
        print(f"error: {message}", file=sys.stderr)
        return code


def _classify(e: Exception, out_of_memory: type, non_finite: type) -> tuple[int | None, str]:
    import torch

    if isinstance(e, out_of_memory):
        return OUT_OF_MEMORY, str(e)
    if isinstance(e, torch.OutOfMemoryError):
        return OUT_OF_MEMORY, "out of GPU memory: lower --batch_size (or --image_size), or close other GPU programs"
    if isinstance(e, non_finite):
        return NON_FINITE, str(e)
    if isinstance(e, FileNotFoundError):  # ours carry the message; the OS's carry errno and the file
        return USER_ERROR, str(e) if e.errno is None else f"{e.filename}: {e.strerror}"
    if isinstance(e, WriteError):
        return PARTIAL, str(e)
    if isinstance(e, OSError):
        where = e.filename or "a file"
        hint = _OS_HINTS.get(e.errno, "")
        return PARTIAL, f"{where}: {e.strerror or e}" + (f"; {hint}" if hint else "")
    if isinstance(e, (ValueError, ImportError)):
        return USER_ERROR, str(e)
    return None, ""
