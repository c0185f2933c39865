"""The letterbox cache: each original is decoded and resized once, so that training epochs read small arrays.

One entry per (source file identity, target size): ``<root>/<H>x<W>/<key>.npy`` holds the letterboxed
``(H, W)`` uint8 image and ``<key>.json`` its source size and content hash. :class:`PatchScaleCache` keeps the
originals resampled to the local stage's patch scale the same way, under ``<root>/mm<mm_per_px>/``. Both files are
written to a temporary name and renamed into place, the JSON last (:func:`write_entry`), so an interrupted
``cephalo prepare`` leaves only complete entries and simply resumes. A source that changes (size or modification
time) gets a new key. The JSON also holds the array's shape and a CRC-32 of its pixels, checked once per run when
the entry is looked up (not per sample): a truncated, reshaped or altered entry is named in a warning and made
again from its source (:func:`damage`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cephalo.atomic import WriteError, atomic_open, write_text
from cephalo.console import progress_bar
from cephalo.datasets.checks import outside_image_problem
from cephalo.datasets.issues import DataIssue
from cephalo.datasets.record import LandmarkRecord
from cephalo.image_io import ImageReadError, decode_grey, read_bytes
from cephalo.preprocessing.letterbox import Letterbox
from cephalo.preprocessing.rescale import Rescale

CACHE_VERSION = 1  # bump when the stored pixels would change (interpolation, grey conversion, ...)
CACHE_HINT = "the letterbox cache cannot be written there: give --cache_dir or set CEPHALO_CACHE to a folder with space"


@dataclass(frozen=True)
class CacheEntry:
    """A cached letterboxed image and what is needed to map its coordinates back to the original."""

    array_path: Path
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    content_hash: str

    @property
    def letterbox(self) -> Letterbox:
        return Letterbox(self.source_size, self.target_size)

    def load(self) -> np.ndarray:
        """The letterboxed image, ``(H, W)`` uint8."""
        return np.load(self.array_path)


@dataclass
class PrepareResult:
    """Outcome of :meth:`LetterboxCache.prepare`: good records with their entries, and every problem found."""

    records: list[LandmarkRecord] = field(default_factory=list)
    entries: list[CacheEntry] = field(default_factory=list)
    issues: list[DataIssue] = field(default_factory=list)
    decoded: int = 0
    reused: int = 0
    seconds: float = 0.0


def source_key(source: Path, preprocessing: str) -> str:
    """A cache key: the source file's identity (resolved path, size, modification time) and what was done to it."""
    st = source.stat()
    identity = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{preprocessing}|v{CACHE_VERSION}"
    return hashlib.blake2b(identity.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def pixels_crc(array: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(array)):08x}"


def write_entry(folder: Path, key: str, array: np.ndarray, meta: dict) -> Path:
    """``<key>.npy`` then ``<key>.json`` in ``folder``, each atomically (an entry is complete once its JSON is
    there), the JSON with the array's shape and pixel CRC; returns the array's path. A failed write names the
    cache's folder options."""
    array_path = folder / f"{key}.npy"
    try:
        with atomic_open(array_path) as f:
            np.save(f, array)
        write_text(folder / f"{key}.json", json.dumps({**meta, "shape": list(array.shape),
                                                        "pixels_crc32": pixels_crc(array)}))
    except WriteError as e:  # the cache's problem, not the image's: stop with where to put the cache
        raise WriteError(e.filename, e, CACHE_HINT) from None
    return array_path


def damage(array_path: Path, meta: dict, shape: tuple[int, int]) -> str | None:
    """What is wrong with a cached array, or None: it must read as a ``shape`` uint8 array whose pixels match the
    CRC its JSON holds (entries written before 2026-12-05 have none: their shape and readability are checked)."""
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError) as e:  # truncated, not an .npy
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    if array.shape != tuple(shape) or array.dtype != np.uint8:
        return f"a {array.dtype} array of {tuple(array.shape)}, not uint8 of {tuple(shape)}"
    if "pixels_crc32" in meta and pixels_crc(array) != meta["pixels_crc32"]:
        return "its pixels do not match the checksum written with them"
    return None


def report_damage(array_path: Path, why: str, source: Path) -> None:
    print(f"warning: damaged cache entry {array_path}: {why}; made again from {source}", file=sys.stderr, flush=True)


class LetterboxCache:
    """Letterboxed greyscale copies of original images at one ``image_size`` ``(H, W)``, under ``root``."""

    def __init__(self, root: Path | str, image_size: tuple[int, int]):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.folder = Path(root) / f"{self.image_size[0]}x{self.image_size[1]}"

    def key(self, source: Path) -> str:
        """Identity of the source file (resolved path, size, modification time) and of the preprocessing."""
        return source_key(source, str(self.image_size))

    def lookup(self, source: Path) -> CacheEntry | None:
        """The complete entry for ``source``, or ``None`` if it has not been prepared (or has changed since)."""
        key = self.key(source)
        meta_path, array_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        if not (meta_path.is_file() and array_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            entry = CacheEntry(array_path, tuple(meta["source_size"]), self.image_size, meta["content_hash"])
        except (ValueError, KeyError, TypeError):
            return None  # a damaged sidecar: prepare the entry again
        why = damage(array_path, meta, self.image_size)
        if why is not None:
            report_damage(array_path, why, source)
            return None
        return entry

    def _build(self, source: Path) -> CacheEntry:
        data = read_bytes(source)
        image = decode_grey(data, source)
        letterbox = Letterbox(image.shape[:2], self.image_size)
        meta = {
            "source": str(source),
            "source_size": list(image.shape[:2]),
            "content_hash": hashlib.sha256(data).hexdigest(),
            "version": CACHE_VERSION,
        }
        array_path = write_entry(self.folder, self.key(source), letterbox.apply(image), meta)
        return CacheEntry(array_path, tuple(image.shape[:2]), self.image_size, meta["content_hash"])

    def _entry(self, source: Path) -> tuple[CacheEntry, bool]:
        entry = self.lookup(source)
        return (entry, False) if entry is not None else (self._build(source), True)

    def prepare(
        self, records: list[LandmarkRecord], num_threads: int = 2, progress: bool = True, desc: str = "prepare"
    ) -> PrepareResult:
        """Make sure every record's image is cached; check its landmarks against the real image size.

        Unreadable images and landmarks outside the image become issues (all collected, none raised). Decoding
        runs in threads: OpenCV releases the GIL while decoding and resizing.
        """
        start = time.perf_counter()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(self.folder, e, CACHE_HINT) from None
        result = PrepareResult()

        def work(record: LandmarkRecord):
            try:
                return self._entry(record.image_path)
            except WriteError:
                raise  # stops the command: no image is to blame
            except FileNotFoundError:
                return ImageReadError(f"{record.image_path}: image file not found")
            except (ImageReadError, OSError) as e:
                return e

        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            outcomes = pool.map(work, records)
            for record, outcome in progress_bar(zip(records, outcomes), total=len(records), desc=desc,
                                                enabled=progress, unit="img"):
                if isinstance(outcome, Exception):
                    text = str(outcome)
                    prefix = f"{record.image_path}: "
                    result.issues.append(DataIssue(record.image_path, text.removeprefix(prefix)))
                    continue
                entry, built = outcome
                result.decoded += built
                result.reused += not built
                problem = outside_image_problem(record.landmarks, record.landmark_names, entry.source_size)
                if problem:
                    result.issues.append(DataIssue(record.image_path, problem))
                    continue
                result.records.append(record)
                result.entries.append(entry)
        result.seconds = time.perf_counter() - start
        return result


def find_duplicates(records: list[LandmarkRecord], entries: list[CacheEntry]) -> list[list[Path]]:
    """Groups of distinct image files with byte-identical content (Aariz has a few across its splits)."""
    groups: dict[str, list[Path]] = {}
    for record, entry in zip(records, entries):
        paths = groups.setdefault(entry.content_hash, [])
        if record.image_path not in paths:
            paths.append(record.image_path)
    return [paths for paths in groups.values() if len(paths) > 1]


class PatchScaleCache:
    """Originals resampled to ``mm_per_px`` (the local stage's patch scale) from each record's spacing, under
    ``root/mm<mm_per_px>``: decoded once, then read back memory-mapped (a run holds no copy of its own)."""

    def __init__(self, root: Path | str, mm_per_px: float):
        self.mm_per_px = float(mm_per_px)
        self.folder = Path(root) / f"mm{self.mm_per_px:g}"

    def load(self, record: LandmarkRecord) -> tuple[np.ndarray, Rescale, bool]:
        """``(h, w)`` uint8 image at the patch scale, its :class:`Rescale` from the original, and whether the
        original had to be decoded (not cached yet)."""
        source = Path(record.image_path)
        key = source_key(source, f"{record.spacing_mm!r}->{self.mm_per_px!r}mm")
        meta_path, array_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            rescale = Rescale(tuple(meta["source_size"]), record.spacing_mm, self.mm_per_px)
        except (OSError, ValueError, KeyError, TypeError):
            meta = None  # not cached yet, or its sidecar damaged: make it again
        if meta is not None:
            why = damage(array_path, meta, rescale.size)
            if why is None:
                return np.load(array_path, mmap_mode="r"), rescale, False
            report_damage(array_path, why, source)
        image = decode_grey(read_bytes(source), source)
        rescale = Rescale(image.shape[:2], record.spacing_mm, self.mm_per_px)
        scaled = rescale.apply(image)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(self.folder, e, CACHE_HINT) from None
        write_entry(self.folder, key, scaled, {"source": str(source), "source_size": list(image.shape[:2]),
                                               "spacing_mm": record.spacing_mm, "version": CACHE_VERSION})
        try:  # read back mapped, as a cached entry is: a run holds no copy, and workers reopen it by its name
            return np.load(array_path, mmap_mode="r"), rescale, True
        except (OSError, ValueError):
            return scaled, rescale, True
