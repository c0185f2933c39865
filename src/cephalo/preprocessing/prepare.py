"""Reading and caching the splits a command needs, with one report of every problem in all of them."""

from __future__ import annotations

from cephalo.datasets.issues import DataIssue, resolve_issues
from cephalo.datasets.sources import DatasetSpec, collect_records
from cephalo.preprocessing.cache import LetterboxCache, PrepareResult


def prepare_splits(
    spec: DatasetSpec, splits: list[str], cache: LetterboxCache, skip_bad: bool, progress: bool = True
) -> dict[str, PrepareResult]:
    """Read and cache each split; stop once with every problem of every split listed (or skip them)."""
    results: dict[str, PrepareResult] = {}
    issues: list[DataIssue] = []
    for split in splits:
        records, split_issues = collect_records(spec, split)
        result = cache.prepare(records, progress=progress, desc=f"prepare {split}")
        result.issues = split_issues + result.issues
        issues += result.issues
        results[split] = result
    resolve_issues(issues, "skip" if skip_bad else "error", context=f"{spec.resolved_format} dataset {spec.path}")
    for split, result in results.items():
        if not result.records:
            drawn = spec.resolved_format == "csv" and split in ("train", "valid", "test")
            hint = (" (a CSV without a split column draws it with --val_fraction and --test_fraction: "
                    f"{spec.val_fraction:g} and {spec.test_fraction:g} here)") if drawn else ""
            raise ValueError(f"{spec.path}: the {split} split has no usable images{hint}")
    return results
