"""Writing files that others read (checkpoints, cache entries, tables, reports) so that a crash, an interrupt or a
full disk never leaves half a file: write a temporary sibling, then rename it over the target. A write that fails
is one :class:`WriteError` naming the file, whatever library was writing."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb", *, fsync: bool = False, **open_kwargs):
    """Open a temporary sibling of ``path`` for writing; when the block ends without error it replaces ``path``.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` keeps its previous
    content; a failed write (a full disk, a read-only folder) is raised as :class:`WriteError` naming ``path``.
    ``fsync=True`` flushes to the disk before the rename, for files that must survive a power cut. The temporary
    name is unique per process and thread, so parallel writers never share one.
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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        failure = write_failure(e)
        if failure is None or isinstance(e, WriteError):
            raise
        raise WriteError(path, failure) from e


class WriteError(OSError):
    """A file or folder that cannot be written, with what the user can do about it (``hint``)."""

    def __init__(self, path: Path | str, cause: OSError, hint: str = ""):
        code, reason = cause.errno, cause.strerror or str(cause)
        if code is None and _nearly_full(Path(path)):  # numpy's short write says only "N requested and M written"
            code, reason = errno.ENOSPC, os.strerror(errno.ENOSPC)
        super().__init__(code, reason, str(path))
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" + (f"; {self.hint}" if self.hint else "")


def _nearly_full(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def write_failure(error: BaseException) -> OSError | None:
    """The ``OSError`` behind a failed write, also when a library reported it as another error (torch's zip writer
    raises ``RuntimeError`` while handling the ``ENOSPC`` of a full disk); None when the error is not a write's."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_bytes(path: Path | str, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_text(path: Path | str, text: str, *, fsync: bool = False) -> Path:
    """UTF-8 text with ``\\n`` line ends on every platform."""
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)
