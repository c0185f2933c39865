"""Collecting bad input so that one message can list every bad file, not only the first."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

OnBad = Literal["error", "skip"]


@dataclass(frozen=True)
class DataIssue:
    """A problem with one input file (image, annotation or table row)."""

    path: Path | str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class DatasetError(ValueError):
    """Bad input data: the message lists every bad file and what is wrong with it."""

    def __init__(self, issues: list[DataIssue], context: str = "dataset", hint: str | None = None):
        self.issues = list(issues)
        lines = [f"{len(self.issues)} problem(s) in the {context}:"]
        lines += [f"  - {issue}" for issue in self.issues]
        lines.append(
            hint
            or "Fix or remove these files, or pass --skip_bad to leave them out (with a warning and a count)."
        )
        super().__init__("\n".join(lines))


def resolve_issues(issues: list[DataIssue], on_bad: OnBad, context: str = "dataset") -> None:
    """Stop with every issue listed (``on_bad="error"``) or warn once with a count (``"skip"``)."""
    if not issues:
        return
    if on_bad == "error":
        raise DatasetError(issues, context)
    if on_bad != "skip":
        raise ValueError(f"on_bad must be 'error' or 'skip', not {on_bad!r}")
    shown = "\n".join(f"  - {issue}" for issue in issues[:20])
    more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
    warnings.warn(
        f"skipping {len(issues)} bad item(s) in the {context}:\n{shown}{more}", stacklevel=2
    )
