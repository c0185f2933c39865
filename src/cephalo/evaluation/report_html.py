"""The page of ``cephalo evaluate --report``: ``report.html``, one file without scripts or external resources
that shows the tables, plots and gallery (images by relative path, so keep the folder together)."""

from __future__ import annotations

import datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from cephalo.evaluation.gallery import GalleryImage
from cephalo.metrics import report_rows, sdr_labels
from cephalo.visualize import overlay

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;background:#f6f7f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh;box-sizing:border-box}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 10px;border-bottom:1px solid #e3e5e8;padding-bottom:4px}
.sub{color:#666;margin:0 0 18px;font-size:13px}
table{border-collapse:collapse;font-size:13.5px}
th,td{padding:4px 10px;border-bottom:1px solid #eceef1;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f2f5;font-weight:600}th:first-child,td:first-child,td.text{text-align:left}
tr.overall td{font-weight:700;border-top:2px solid #999;background:#fafbfc}
table.meta td{text-align:left;border:none;padding:2px 14px 2px 0}table.meta td:first-child{color:#666}
td.path{word-break:break-all;font-family:ui-monospace,Consolas,monospace;font-size:12.5px}
.good{background:#e3f4e8}.fair{background:#fbf0d6}.poor{background:#f9dedb}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{border:1px solid #e3e5e8;border-radius:8px;padding:10px 16px;min-width:120px;background:#fafbfc}
.card .v{font-size:22px;font-weight:700}.card .l{font-size:12px;color:#666}
img.plot{max-width:100%;border:1px solid #eceef1;margin:6px 0}
.gallery{display:grid;align-items:start;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
figure{margin:0;border:1px solid #e3e5e8;border-radius:6px;overflow:hidden;background:#fafbfc}
figure img{width:100%;display:block}figcaption{font-size:13px;padding:6px 10px}
.note{background:#fff6e0;border-left:4px solid #e0a526;padding:8px 12px;font-size:13.5px}
.legend span{display:inline-block;margin-right:16px}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;vertical-align:middle;margin-right:4px}
details summary{cursor:pointer;color:#1f4e79;margin:6px 0}
"""


def render_html(report: dict, case_errors: list[tuple[str, np.ndarray]], names: tuple[str, ...],
                plots: list[Path], gallery: list[GalleryImage], notes: list[str]) -> str:
    """The report page; images are referenced by file name, relative to the page.

    Args:
        report: the evaluation report (``score_predictions(...).report``), with ``dataset``, ``split`` and
            ``predictions`` where known.
        case_errors: ``(case_id, (K,) errors in mm)`` for every scored image.
        names: the ``K`` landmark names.
        plots, gallery: the pictures written next to the page.
        notes: warnings shown under the overall numbers (parts of the report left out).
    """
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    thresholds = sdr_labels(report)
    parts = [
        *_page_head(report),
        *_intro(report, when, len(case_errors), names),
        *_overall(report, thresholds),
        *(f'<p class="note">{escape(n)}</p>' for n in notes),
        *_per_landmark(report, thresholds),
        *_analysis(report.get("analysis")),
        *_plots(plots),
        *_gallery(gallery),
        *_per_image(case_errors, names),
        "</main></body></html>",
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- sections, each a list of lines of the page


def _page_head(report: dict) -> list[str]:
    """From the doctype to the opening ``<main>``: the title names the predictions file."""
    title = Path(str(report.get("predictions", "predictions"))).name
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cephalo evaluation: {escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
    ]


def _intro(report: dict, when: str, n_images: int, names: tuple[str, ...]) -> list[str]:
    """The heading, what the numbers mean, and the table of what was scored (paths, counts, unmatched rows)."""
    meta = [
        ("dataset", _path_span(report.get("dataset", ""))),
        ("split", escape(str(report.get("split", "")))),
        ("predictions", _path_span(report.get("predictions", ""))),
        ("images scored", str(report.get("images", n_images))),
        ("landmarks", str(len(names))),
        ("landmark instances", str(report["overall"]["count"])),
        ("images without prediction", _listing(report.get("missing", []))),
        ("prediction rows matching no image", _listing(report.get("unmatched_predictions", []))),
    ]
    run = report.get("prediction_run")  # the run.json cephalo predict wrote beside the predictions, if any
    if run:
        model = run.get("model") or {}
        meta += [("model", _path_span(model.get("path", "")) + escape(f" ({model.get('kind', '')}, SHA-256 "
                                                                     f"{str(model.get('sha256', ''))[:12]})")),
                 ("predicted with", escape(f"cephalo {run.get('cephalo', '?')}, {run.get('created', '')}"
                                           + (", test-time augmentation" if run.get("tta") else "")))]
    return [
        "<h1>Landmark detection report</h1>",
        f'<p class="sub">cephalo evaluate, {when}. Errors are radial, in mm, measured in each image\'s original '
        + "pixels with its own spacing; MRE, SD and SDR pool all (image, landmark) instances.</p>",
        '<table class="meta">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta) + "</table>",
    ]


def _overall(report: dict, thresholds: list[str]) -> list[str]:
    """One card for the MRE (with SD), one per SDR threshold."""
    overall = report["overall"]
    return [
        "<h2>Overall</h2>",
        '<div class="cards">',
        _card(f"{overall['mre_mm']:.2f} mm", f"MRE ± {overall['sd_mm']:.2f} (SD)"),
        *(_card(f"{overall['sdr'][t]:.1f}%", f"SDR {escape(t[:-2])} mm") for t in thresholds),
        "</div>",
    ]


def _per_landmark(report: dict, thresholds: list[str]) -> list[str]:
    """The per-landmark table (MRE cell coloured by band, overall row last) and its legend."""
    head = ["landmark", "MRE (mm)", "SD (mm)", *(f"SDR {escape(t[:-2])} mm" for t in thresholds), "count"]
    lines = ["<h2>Per landmark</h2>", _table_open(head)]
    for name, s in report_rows(report):
        cells = [f"<td>{escape(name)}</td>", f'<td class="{_band_class(s["mre_mm"])}">{s["mre_mm"]:.3f}</td>',
                 f"<td>{s['sd_mm']:.3f}</td>", *(f"<td>{s['sdr'][t]:.2f}%</td>" for t in thresholds),
                 f"<td>{s['count']}</td>"]
        lines.append(('<tr class="overall">' if name == "overall" else "<tr>") + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    lines.append('<p class="sub">MRE cell: <span class="good">&nbsp;≤ 2 mm&nbsp;</span> '
                 + '<span class="fair">&nbsp;2-4 mm&nbsp;</span> <span class="poor">&nbsp;&gt; 4 mm&nbsp;</span>. '
                 + 'Also in <a href="per_landmark.csv">per_landmark.csv</a> and '
                 + '<a href="per_landmark.md">per_landmark.md</a>.</p>')
    return lines


def _plots(plots: list[Path]) -> list[str]:
    """Each plot full width; nothing without plots (no matplotlib)."""
    if not plots:
        return []
    images = [f'<p><img class="plot" src="{_href(p)}" alt="{escape(p.stem.replace("_", " "))}"></p>' for p in plots]
    return ["<h2>Plots</h2>", *images]


def _gallery(gallery: list[GalleryImage]) -> list[str]:
    """The worst images in a grid, worst first, with a colour legend; each links to the full-size picture."""
    if not gallery:
        return []
    lines = [f"<h2>The {len(gallery)} image(s) with the highest MRE</h2>",
             '<p class="legend">' + "".join(f"<span>{item}</span>" for item in _overlay_legend())
             + "(cropped to the landmarks; click an image for full size)</p>",
             '<div class="gallery">']
    for k, (path, case, mre, detail) in enumerate(gallery, start=1):
        link = f'<a href="{_href(path)}"><img src="{_href(path)}" alt="{escape(case)}" loading="lazy"></a>'
        caption = f"<figcaption><b>#{k} {escape(case)}</b>: MRE {mre:.2f} mm, {escape(detail)}</figcaption>"
        lines.append(f"<figure>{link}{caption}</figure>")
    lines.append("</div>")
    return lines


def _overlay_legend() -> list[str]:
    """A dot, ring and line in the colours :mod:`cephalo.visualize.overlay` draws with, each with its meaning."""
    dot = '<i class="dot" style="{}"></i>'
    return [
        dot.format(f"background:{_css_colour(overlay.PREDICTED)}") + "prediction",
        dot.format(f"border:2px solid {_css_colour(overlay.TRUTH)};width:8px;height:8px") + "ground truth",
        dot.format(f"background:{_css_colour(overlay.ERROR)};border-radius:0;height:3px") + "error",
    ]


def _per_image(case_errors: list[tuple[str, np.ndarray]], names: tuple[str, ...]) -> list[str]:
    """Every image, highest MRE first (ties by case id), folded away when there are more than 40."""
    ranked = sorted(case_errors, key=lambda item: (-float(item[1].mean()), item[0]))
    lines = ["<h2>Per image</h2>",
             f"<details{' open' if len(ranked) <= 40 else ''}>"
             + f"<summary>all {len(ranked)} images, highest MRE first</summary>",
             _table_open(["image", "MRE (mm)", "max (mm)", "worst landmark"])]
    for case, errs in ranked:
        j, mre = int(errs.argmax()), float(errs.mean())
        lines.append(f'<tr><td>{escape(case)}</td><td class="{_band_class(mre)}">{mre:.3f}</td>'
                     + f'<td>{errs[j]:.3f}</td><td class="text">{escape(names[j])}</td></tr>')
    lines.append("</tbody></table></details>")
    lines.append('<p class="sub">Every landmark of every image: <a href="per_image.csv">per_image.csv</a>; '
                 + 'the full report: <a href="report.json">report.json</a>.</p>')
    return lines


def _analysis(analysis: dict | None) -> list[str]:
    """Measurement errors and the ISBI 2015 classification success rates with their confusion matrices
    (``cephalo evaluate --analysis``); nothing without them."""
    if not analysis:
        return []
    lines = ["<h2>Cephalometric measurements</h2>",
             _table_open(["measurement", "unit", "images", "mean abs. difference", "truth mean ± SD"])]
    for name, m in analysis["measurements"].items():
        lines.append(f"<tr><td>{escape(name)}</td><td>{m['unit']}</td><td>{m['images']}</td><td>{m['mad']:.3f}</td>"
                     f"<td>{m['truth_mean']:.2f} ± {m['truth_sd']:.2f}</td></tr>")
    lines.append("</tbody></table>")
    if analysis["classification"]:
        lines += ["<h2>ISBI 2015 classification</h2>",
                  '<p class="sub">Success rate: the share of images whose class from the predicted landmarks is the '
                  "class from the ground truth. Confusion: rows the true class, columns the predicted one.</p>",
                  _table_open(["measure", "images", "success rate", "confusion"])]
        for name, c in analysis["classification"].items():
            head = "".join(f"<th>{escape(n)}</th>" for n in c["class_names"])
            rows = "".join(f"<tr><th>{escape(n)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                           for n, row in zip(c["class_names"], c["confusion"]))
            lines.append(f"<tr><td>{escape(name)}</td><td>{c['images']}</td><td>{c['success_rate']:.1f}%</td>"
                         f"<td><table><tr><th></th>{head}</tr>{rows}</table></td></tr>")
        lines.append("</tbody></table>")
    lines += [f'<p class="sub">{escape(name)}: unavailable ({escape(why)})</p>'
              for name, why in analysis["unavailable"].items()]
    return lines


# ---------------------------------------------------------------- small pieces


def _table_open(head: list[str]) -> str:
    """A table's opening up to its ``<tbody>``, with the header row ``head`` (already escaped)."""
    return "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><div class="v">{value}</div><div class="l">{label}</div></div>'


def _listing(items: list[str]) -> str:
    """``n (a, b, ...)``: how many, and the first 10 of them."""
    shown = ", ".join(items[:10]) + (f", … ({len(items)} in all)" if len(items) > 10 else "")
    return f"{len(items)}" + (f" ({escape(shown)})" if items else "")


def _path_span(path) -> str:
    return f'<span class="path">{escape(str(path))}</span>'


def _band_class(mre: float) -> str:
    return "good" if mre <= 2.0 else "fair" if mre <= 4.0 else "poor"


def _href(path: Path) -> str:
    return quote(path.name)


def _css_colour(bgr) -> str:
    """``#rrggbb`` for an OpenCV ``(b, g, r)`` colour."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in reversed(tuple(bgr)[:3])))
