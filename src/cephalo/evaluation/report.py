"""``cephalo evaluate --report DIR``: an evaluation as files a person reads.

``DIR`` gets ``per_landmark.csv`` / ``.md`` (MRE, SD, SDR per landmark, overall last), ``per_image.csv`` (every
image's MRE and per-landmark errors), ``report.json``, the plots ``landmark_errors.png`` and
``error_distribution.png`` (matplotlib; skipped with a warning without it), ``worst_<k>_<case>.jpg`` (the images
with the highest MRE, predictions against ground truth, OpenCV only) and ``report.html``, one page without
scripts or external resources that shows all of it (images by relative path, so keep the folder together).
Every file is written to a temporary name and renamed.

Here: the tables and the assembly; the gallery is :mod:`cephalo.evaluation.gallery` (its pictures
:mod:`cephalo.visualize.gallery`), the page :mod:`cephalo.evaluation.report_html`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cephalo.atomic import write_text
from cephalo.datasets.record import LandmarkRecord
from cephalo.evaluation.evaluate import Evaluation
from cephalo.evaluation.gallery import GALLERY_FILE, write_gallery
from cephalo.evaluation.report_html import render_html
from cephalo.metrics import report_rows, sdr_labels

LANDMARK_PLOT = "landmark_errors.png"
DISTRIBUTION_PLOT = "error_distribution.png"


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote: ``html`` (the page), every file in order, and the warnings it gave."""

    html: Path
    files: list[Path] = field(default_factory=list)
    gallery: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- tables


def per_landmark_csv(report: dict) -> str:
    """CSV text: ``landmark,mre_mm,sd_mm,sdr_<t>,...,count`` (SDR in %), one row per landmark, overall last."""
    thresholds = sdr_labels(report)
    lines = [",".join(["landmark", "mre_mm", "sd_mm"] + [f"sdr_{t}" for t in thresholds] + ["count"])]
    for name, s in report_rows(report):
        cells = [_csv_cell(name), f"{s['mre_mm']:.4f}", f"{s['sd_mm']:.4f}"]
        cells += [f"{s['sdr'][t]:.4f}" for t in thresholds] + [str(s["count"])]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def per_landmark_markdown(report: dict) -> str:
    """A Markdown table: MRE and SD in mm, SDR in %, count; the overall row last, in bold."""
    thresholds = sdr_labels(report)
    header = ["landmark", "MRE (mm)", "SD (mm)"] + [f"SDR {t[:-2]} mm (%)" for t in thresholds] + ["count"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for name, s in report_rows(report):
        cells = [name.replace("|", "\\|"), f"{s['mre_mm']:.3f}", f"{s['sd_mm']:.3f}"]
        cells += [f"{s['sdr'][t]:.2f}" for t in thresholds] + [str(s["count"])]
        if name == "overall":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_image_csv(case_ids: list[str], errors_mm: np.ndarray, names: tuple[str, ...]) -> str:
    """CSV text: ``image,mre_mm,max_mm,worst_landmark,<name>_mm...``, one row per scored image."""
    lines = [",".join(["image", "mre_mm", "max_mm", "worst_landmark"] + [_csv_cell(f"{n}_mm") for n in names])]
    for case, e in zip(case_ids, errors_mm):
        cells = [_csv_cell(case), f"{e.mean():.4f}", f"{e.max():.4f}", _csv_cell(names[int(e.argmax())])]
        lines.append(",".join(cells + [f"{v:.4f}" for v in e]))
    return "\n".join(lines) + "\n"


def worst_images(per_image_mre_mm: dict[str, float], n: int) -> list[tuple[str, float]]:
    """The ``n`` images with the highest MRE as ``(case_id, mre_mm)``, worst first (ties: by case id)."""
    ranked = sorted(per_image_mre_mm.items(), key=lambda item: (-item[1], item[0]))
    return ranked[: max(0, n)]


# ---------------------------------------------------------------- plots


def write_plots(out_dir: Path, evaluation: Evaluation, warn: Callable[[str], None]) -> list[Path]:
    """The two PNG plots; without matplotlib, none, and one warning naming the pip command."""
    from cephalo.visualize import plots

    report = evaluation.report
    thresholds = tuple(float(t[:-2]) for t in sdr_labels(report))
    try:
        return [
            plots.plot_landmark_errors(report["per_landmark"], report["overall"], out_dir / LANDMARK_PLOT),
            plots.plot_error_distribution(evaluation.errors_mm, out_dir / DISTRIBUTION_PLOT, thresholds),
        ]
    except plots.PlotDependencyError as e:
        warn(f"plots skipped: {e}")
        return []


# ---------------------------------------------------------------- the folder


def write_report(out_dir: Path | str, evaluation: Evaluation, records: list[LandmarkRecord], worst: int = 6,
                 warn: Callable[[str], None] | None = None) -> ReportFiles:
    """Write the report folder (see the module docstring); returns what was written.

    Args:
        evaluation: from :func:`cephalo.evaluation.evaluate.score_predictions` on ``records``.
        worst: how many of the highest-MRE images go into the gallery.
        warn: receives problems that leave part of the report out (default: ``warning: ...`` on stderr).
    """
    warn_fn = warn or _warn_stderr
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn_fn(message)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = evaluation.report
    names = records[int(evaluation.record_indices[0])].landmark_names
    case_ids = [records[int(i)].case_id for i in evaluation.record_indices]
    files = [
        write_text(out_dir / "per_landmark.csv", per_landmark_csv(report)),
        write_text(out_dir / "per_landmark.md", per_landmark_markdown(report)),
        write_text(out_dir / "per_image.csv", per_image_csv(case_ids, evaluation.errors_mm, names)),
        write_text(out_dir / "report.json", json.dumps(report, indent=2)),
    ]
    _remove_earlier_pictures(out_dir)
    gallery = write_gallery(out_dir, worst_images(report["per_image_mre_mm"], worst), evaluation, records, note)
    plots = write_plots(out_dir, evaluation, note)
    page = render_html(report, list(zip(case_ids, evaluation.errors_mm)), names, plots, gallery, warnings)
    html_path = write_text(out_dir / "report.html", page)
    pictures = [g.path for g in gallery]
    files += pictures + plots + [html_path]
    return ReportFiles(html=html_path, files=files, gallery=pictures, plots=plots, warnings=warnings)


def _remove_earlier_pictures(out_dir: Path) -> None:
    """Delete gallery pictures and plots left in ``out_dir`` by an earlier run: they would pass for this one's (a
    run may write fewer, or none without matplotlib)."""
    for stale in out_dir.iterdir():
        if GALLERY_FILE.match(stale.name) or stale.name in (LANDMARK_PLOT, DISTRIBUTION_PLOT):
            stale.unlink()
