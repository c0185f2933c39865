"""The doctor's results: one :class:`Check` per line of its table, and the table as text, markdown and JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

PASS, FAIL, SKIPPED, INFO = "PASS", "FAIL", "SKIPPED", "INFO"  # INFO: a fact about the machine, nothing to pass


@dataclass
class Check:
    """One line: ``section`` (environment, correctness, memory, speed, recommendation), what was checked, the
    outcome and, in ``detail``, the figures behind it or why it was skipped; ``figures`` for doctor.json."""

    section: str
    name: str
    status: str
    detail: str = ""
    figures: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (PASS, FAIL, SKIPPED, INFO):
            raise ValueError(f"unknown status {self.status!r}")


def check_line(c: Check) -> str:
    """``name: STATUS detail``, the line shown as a check completes (the table at the end aligns them)."""
    return f"{c.name}: {c.status} {c.detail}".rstrip()


def shown(show: Callable[[Check], None], check: Check) -> Check:
    """``check``, after ``show`` has seen it: sections pass each check on as it is made."""
    show(check)
    return check


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]


def table_text(checks: list[Check]) -> str:
    """Aligned plain text, a section heading before its lines (what the terminal shows)."""
    width = max((len(c.name) for c in checks), default=0)
    lines, section = [], None
    for c in checks:
        if c.section != section:
            section = c.section
            lines.append(f"{section}:")
        lines.append(f"  {c.name:<{width}}  {c.status:<7}  {c.detail}".rstrip())
    return "\n".join(lines)


def table_markdown(checks: list[Check]) -> str:
    rows = ["| section | check | status | detail |", "|---|---|---|---|"]
    rows += [f"| {c.section} | {c.name} | {c.status} | {c.detail.replace('|', '/')} |" for c in checks]
    return "\n".join(rows)


def summary_line(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, FAIL, SKIPPED)}
    return f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIPPED]} skipped"


def as_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
