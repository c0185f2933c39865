"""Writing files that others read (checkpoints, cache entries, tables, reports) so that a crash, an interrupt or a
full disk never leaves half a file: write a temporary sibling, then rename it over the target."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb", *, fsync: bool = False, **open_kwargs):
    """Open a temporary sibling of ``path`` for writing; when the block ends without error it replaces ``path``.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` keeps its previous
    content. ``fsync=True`` flushes to the disk before the rename, for files that must survive a power cut.
    The temporary name is unique per process and thread, so parallel writers never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path | str, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text(path: Path | str, text: str, *, fsync: bool = False) -> Path:
    """UTF-8 text with ``\\n`` line ends on every platform."""
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)
