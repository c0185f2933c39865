"""What an option's value must be: small checks that return ``None`` for a good value, else the words that finish
``--flag VALUE: ...`` (``must be at least 1``), used by :func:`cephalo.flags.option` fields and by the flags the
commands add by hand. Paths are checked for what the command will do with them: read a file, read a dataset, or
write into a folder."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?")


def duration_seconds(word: str) -> float:
    """``90s``, ``25m``, ``8h``, ``1h30m``, ``1.5h`` (or a plain number of seconds) -> seconds; ``ValueError``
    otherwise."""
    word = str(word).strip().lower()
    try:
        seconds = float(word)
    except ValueError:
        found = _DURATION.fullmatch(word)
        if not word or found is None or not any(found.groups()):
            raise ValueError(f"not a duration: {word!r}") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in found.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds):  # 'inf', 'nan', '1e400': no plan can be made over them
        raise ValueError(f"not a finite duration: {word!r}")
    return seconds


duration_seconds.expects = "a duration such as 90s, 25m, 8h or 1h30m"  # what Typed says of a bad word


def format_duration(seconds: float) -> str:
    """``5400 -> '1 h 30 min'``, ``1500 -> '25 min'``, ``90 -> '1 min 30 s'``, ``42.4 -> '42 s'``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


def at_least(low: float):
    def check(value) -> str | None:
        return None if value >= low else f"must be at least {low:g}"
    return check


def above(low: float):
    def check(value) -> str | None:
        return None if value > low else f"must be more than {low:g}"
    return check


def between(low: float, high: float, *, high_open: bool = False):
    """``low <= value <= high`` (``< high`` with ``high_open``)."""
    def check(value) -> str | None:
        fine = low <= value < high if high_open else low <= value <= high
        return None if fine else f"must be in [{low:g}, {high:g}{')' if high_open else ']'}"
    return check


def multiple_of(step: int, why: str):
    def check(value) -> str | None:
        return None if value > 0 and value % step == 0 else f"must be a positive multiple of {step} ({why})"
    return check


def context_factor(value) -> str | None:
    return None if value == 0 or value >= 2 else "must be 0 (no context channel) or at least 2"


def fold_spec(value: str) -> str | None:
    """``k/n`` with 1 <= k <= n and n >= 2."""
    k, _, n = str(value).partition("/")
    if k.isdigit() and n.isdigit() and int(n) >= 2 and 1 <= int(k) <= int(n):
        return None
    return "must be k/n: fold k of n folds, 1 <= k <= n, n >= 2 (e.g. 3/5)"


def device_name(value: str) -> str | None:
    name, _, index = value.partition(":")
    if name in ("auto", "cpu") and not index or name == "cuda" and (not index or index.isdigit()):
        return None
    return "must be auto, cpu, cuda or cuda:N"


def existing_file(value) -> str | None:
    path = Path(value)
    if path.is_file():
        return None
    return "is a folder, not a file" if path.is_dir() else "no such file"


TIMM_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?$")  # hrnet_w32.ms_in1k, resnet50.a1_in1k


def looks_like_timm_name(source: str) -> bool:
    """A timm model name rather than a path: no folder separator, no weight-file suffix, not an existing file."""
    return bool(TIMM_NAME.match(source)) and not Path(source).exists() and Path(source).suffix not in (
        ".safetensors", ".pth", ".pt", ".bin")


def weights_source(value) -> str | None:
    """``--pretrained``: an existing weight file, or a timm model name (``hrnet_w32.ms_in1k``)."""
    return None if looks_like_timm_name(str(value)) else existing_file(value)


def existing_path(value) -> str | None:
    return None if Path(value).exists() else "no such file or folder"


def dataset_location(value) -> str | None:
    if str(value) == "synthetic" or Path(value).exists():
        return None
    return "no such dataset folder or CSV file (or give 'synthetic' for the built-in dataset)"


def resume_source(value) -> str | None:
    if value == "auto" or Path(value).exists():
        return None
    return "no such checkpoint or run folder (or give 'auto')"


def writable_folder(value) -> str | None:
    """A folder that exists and can be written, or that can be created."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    existing = path if path.exists() else _nearest_existing(path)
    if existing is None or not existing.is_dir():
        return f"cannot be created ({existing} is a file)" if existing else "cannot be created"
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing})"
        return f"is not writable{where}: read-only or no permission; choose another folder"
    return None


def writable_file(value) -> str | None:
    """A file that can be written (created or replaced) where it is."""
    path = Path(value)
    if path.is_dir():
        return "is a folder, not a file"
    problem = writable_folder(path.parent if str(path.parent) else ".")
    return None if problem is None else f"its folder {path.parent} {problem}"


def _nearest_existing(path: Path) -> Path | None:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return None
