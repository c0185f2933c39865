"""Evaluation plots (matplotlib, an optional dependency: ``pip install "cephalo[report]"``).

matplotlib is imported inside the functions, with the non-interactive Agg backend, so that ``import cephalo``
never needs it and a server without a display never opens a window.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cephalo.atomic import write_bytes

MATPLOTLIB_HINT = 'plots need matplotlib: pip install "cephalo[report]" (or pip install matplotlib)'
DPI = 120

# MRE colour bands: within the clinically accepted 2 mm, within 4 mm, beyond
GOOD, FAIR, POOR = "#3a9d5d", "#e0a526", "#d0473d"


class PlotDependencyError(ImportError):
    """matplotlib is not installed; the message names the pip command."""


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or :class:`PlotDependencyError`."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotDependencyError(MATPLOTLIB_HINT) from e
    return plt


def _save(plt, fig, path: Path) -> None:
    """Write ``fig`` as a PNG atomically, then close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _band(mre: float) -> str:
    return GOOD if mre <= 2.0 else FAIR if mre <= 4.0 else POOR


def plot_landmark_errors(per_landmark: dict, overall: dict, path: Path | str, title: str = "") -> Path:
    """Per-landmark MRE bars with SD whiskers, landmarks top to bottom in dataset order.

    Args:
        per_landmark: ``{name: {"mre_mm", "sd_mm", ...}}`` as in the evaluation report.
        overall: the report's overall summary (its MRE is drawn as a dashed line).
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    names = list(per_landmark)
    mre = np.array([per_landmark[n]["mre_mm"] for n in names])
    sd = np.array([per_landmark[n]["sd_mm"] for n in names])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8.0, 1.6 + 0.32 * len(names)))
    # whiskers from max(0, MRE - SD) to MRE + SD: an error is never negative
    ax.barh(y, mre, xerr=np.stack([np.minimum(sd, mre), sd]), color=[_band(m) for m in mre], height=0.7,
            error_kw={"ecolor": "#444444", "elinewidth": 1, "capsize": 3}, zorder=2)
    right = float((mre + sd).max()) if len(names) else 1.0
    for yi, m, s in zip(y, mre, sd):
        ax.text(m + s + right * 0.015, yi, f"{m:.2f}", va="center", fontsize=8.5, color="#222222", zorder=4,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.axvline(overall["mre_mm"], color="#1f4e79", linestyle="--", linewidth=1.2, zorder=3)
    ax.set_yticks(y, names, fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(0, right * 1.15 + 1e-9)
    ax.set_xlabel("radial error (mm): mean, whisker = ± 1 SD", fontsize=10)
    ax.grid(axis="x", color="#dddddd", zorder=0)
    ax.spines[["top", "right"]].set_visible(False)
    handles = [Patch(color=GOOD, label="MRE ≤ 2 mm"), Patch(color=FAIR, label="2-4 mm"),
               Patch(color=POOR, label="> 4 mm"),
               plt.Line2D([], [], color="#1f4e79", linestyle="--", label=f"overall {overall['mre_mm']:.2f} mm")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=9, frameon=False)
    ax.set_title(title or "Mean radial error per landmark", fontsize=12, pad=26)
    _save(plt, fig, Path(path))
    return Path(path)


def plot_error_distribution(errors_mm: np.ndarray, path: Path | str, thresholds_mm=(2.0, 2.5, 3.0, 4.0),
                            title: str = "") -> Path:
    """Two panels: a histogram of all radial errors, and the cumulative share within x mm (the SDR curve).

    The x axis ends at the 99th percentile (at least 5 mm) so that the thresholds stay readable; the histogram
    counts larger errors in its last bin, and the panel says how many there are.
    """
    plt = _pyplot()
    e = np.sort(np.asarray(errors_mm, np.float64).reshape(-1))
    if e.size == 0:
        raise ValueError("no errors to plot")
    limit = max(5.0, float(np.percentile(e, 99)), max(thresholds_mm) * 1.25)
    limit = float(np.ceil(min(limit, max(float(e.max()), 5.0)) * 2) / 2)  # half-mm grid; never past the largest error
    beyond = int((e > limit).sum())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))

    bins = np.linspace(0.0, limit, min(60, max(20, int(limit / 0.25))) + 1)
    left.hist(np.minimum(e, limit), bins=bins, color="#4a7fb5", edgecolor="white", linewidth=0.5, zorder=2)
    left.set_xlim(0, limit)
    left.set_xlabel("radial error (mm)", fontsize=10)
    left.set_ylabel("landmark instances", fontsize=10)
    left.set_title(f"Error histogram ({e.size} instances)", fontsize=11)
    if beyond:
        left.text(0.98, 0.95, f"{beyond} errors > {limit:g} mm\nin the last bin (max {e[-1]:.1f} mm)",
                  transform=left.transAxes, ha="right", va="top", fontsize=8.5, color="#444444")

    share = np.arange(1, e.size + 1) / e.size * 100.0
    right.step(np.concatenate([[0.0], e]), np.concatenate([[0.0], share]), where="post", color="#1f4e79",
               linewidth=1.6, zorder=3)
    lines = []
    for t in thresholds_mm:
        sdr = float((e <= t).mean() * 100.0)
        right.axvline(t, color="#999999", linestyle=":", linewidth=1, zorder=1)
        right.plot([t], [sdr], "o", color="#d0473d", markersize=5, zorder=4)
        lines.append(f"SDR {t:g} mm: {sdr:5.1f}%")
    # a distribution function is high at the right: its lower right corner is always free
    right.text(0.97, 0.05, "\n".join(lines), transform=right.transAxes, ha="right", va="bottom", fontsize=9.5,
               family="monospace", bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "#cccccc"})
    right.set_xlim(0, limit)
    right.set_ylim(0, 101)
    right.set_xlabel("threshold (mm)", fontsize=10)
    right.set_ylabel("instances within threshold (%)", fontsize=10)
    right.set_title("Success detection rate (SDR) curve", fontsize=11)
    for ax in (left, right):
        ax.grid(color="#e5e5e5", zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(plt, fig, Path(path))
    return Path(path)


def plot_learning_curve(rows: list[dict], path: Path | str, title: str = "") -> Path:
    """Training and validation loss (log scale) and validation MRE per epoch, from a run's ``metrics.jsonl`` rows
    (``epoch``, ``train_loss``, ``val_loss``, ``val_mre_mm``; rows without validation are drawn where they have it)."""
    plt = _pyplot()
    path = Path(path)
    epochs = [r["epoch"] for r in rows if "train_loss" in r]
    fig, (loss_ax, mre_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    loss_ax.plot(epochs, [r["train_loss"] for r in rows if "train_loss" in r], label="training", color="#1f4e79")
    validated = [r for r in rows if r.get("val_loss") is not None]
    loss_ax.plot([r["epoch"] for r in validated], [r["val_loss"] for r in validated], label="validation",
                 color=FAIR)
    loss_ax.set(yscale="log", xlabel="epoch", ylabel="heatmap loss (MSE)")
    loss_ax.legend(frameon=False)
    scored = [r for r in rows if r.get("val_mre_mm") is not None]
    mre_ax.plot([r["epoch"] for r in scored], [r["val_mre_mm"] for r in scored], color=GOOD, marker="o", ms=3)
    mre_ax.set(yscale="log", xlabel="epoch", ylabel="validation MRE (mm)")
    mre_ax.axhline(2.0, color="#888", lw=0.8, ls="--")
    for ax in (loss_ax, mre_ax):
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    _save(plt, fig, path)
    return path
