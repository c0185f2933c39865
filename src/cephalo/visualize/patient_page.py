"""One printable page per patient image: the tracing, each analysis as value | norm | deviation | words, the
skeletal summary, the points to check, and what the page is not.

:func:`render_patient_page` returns one self-contained HTML file (the tracing embedded as a JPEG data URI, no
script, no external resource) laid out for A4 (two pages at most when printed from a browser). Every text that
comes from outside (file names, landmark names, model paths) is escaped. Nothing from a DICOM header but the pixel
spacing is shown: no patient name or ID.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import cv2
import numpy as np

import cephalo
from cephalo.analysis.analyze import Analysis, analyze
from cephalo.analysis.classes import ISBI_CLASSES
from cephalo.analysis.measures import BY_NAME, Measurement, deviation_sd, verdict
from cephalo.analysis.summary import format_value, skeletal_summary
from cephalo.atomic import write_text

ANALYSES = ("Steiner", "Downs", "Tweed", "McNamara", "Björk", "Facial heights", "Kim", "ISBI 2015")
NOT_A_DIAGNOSIS = ("Measurements from automatically placed landmarks, compared with published norms of adult samples."
                   " This page is not a diagnosis: a clinician checks the landmarks and reads the values.")
PAGE_PIXELS = 1400  # the embedded tracing's longer side: sharp when printed 15 cm tall, a few hundred kB

_CSS = """
@page{size:A4;margin:11mm 12mm}
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;margin:0;font-size:12px}
main{max-width:190mm;margin:0 auto;padding:8px}
h1{font-size:18px;margin:0 0 2px}h2{font-size:13.5px;margin:10px 0 4px;border-bottom:1px solid #d6d9de}
.meta{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:1px 10px;font-size:11px;margin:4px 0}
.meta span:nth-child(odd){color:#666}.meta span{overflow-wrap:anywhere}
.top{display:grid;grid-template-columns:58% 1fr;gap:12px;align-items:start}
.top img{width:100%;max-height:150mm;object-fit:contain;border:1px solid #ccd;background:#000}
.box{border:1px solid #d6d9de;border-radius:5px;padding:6px 9px;margin-bottom:8px;background:#fafbfc}
.box h2{margin-top:0;border:none}.box ul{margin:2px 0;padding-left:16px}.box li{margin:2px 0}
.check{border-color:#e0a526;background:#fff8e6}
.no{color:#666}
table{border-collapse:collapse;width:100%;font-size:11px;margin-bottom:4px}
th,td{padding:2px 5px;border-bottom:1px solid #eceef1;text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}td:first-child,td.w,td.na{white-space:normal}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child,td.w{text-align:left}
tr.off td{background:#fdf1df}td.na{color:#888;text-align:left}
.tables{columns:2;column-gap:14px}.tables section{break-inside:avoid}
.legend span{margin-right:12px;white-space:nowrap}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;
vertical-align:middle;margin-right:3px}
footer{margin-top:8px;font-size:10.5px;color:#555;border-top:1px solid #d6d9de;padding-top:4px}
@media print{main{padding:0}.top{break-after:auto}}
"""


@dataclass
class PageInput:
    """What one page shows. ``landmarks`` ``(K, 2)`` original pixels (NaN: missing), ``analysis`` the one-image
    :class:`Analysis` of them, ``image`` the original (grey or BGR; None: no tracing), ``checks`` the landmarks to
    check as ``(name, estimated error in mm)`` (None: the model gives no uncertainty)."""

    title: str
    landmarks: np.ndarray
    names: tuple[str, ...]
    analysis: Analysis
    spacing_mm: float | None
    spacing_source: str
    created: str
    version: str
    image: np.ndarray | None = None
    image_note: str = ""  # why there is no tracing
    model: dict | None = None  # provenance.model_record
    tta: dict | None = None
    checks: list[tuple[str, float]] | None = None
    flagged_measures: list[str] = field(default_factory=list)  # whose class could flip within the uncertainty
    extra: list[tuple[str, str]] = field(default_factory=list)  # more header rows


def page_input(title: str, landmarks: np.ndarray, names, spacing_mm: float | None, spacing_source: str,
               **details) -> PageInput:
    """A :class:`PageInput` for one image's ``landmarks (K, 2)``: its analysis computed here; ``details`` are the
    other fields (``image``, ``model``, ``tta``, ``checks``, ...)."""
    landmarks = np.asarray(landmarks, np.float64)
    analysis = analyze(landmarks[None], tuple(names), [spacing_mm])
    details.setdefault("created", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    details.setdefault("version", cephalo.__version__)
    return PageInput(title=title, landmarks=landmarks, names=tuple(names), analysis=analysis, spacing_mm=spacing_mm,
                     spacing_source=spacing_source, **details)


def tracing_jpeg(image: np.ndarray, landmarks: np.ndarray, names, checks: list[tuple[str, float]] | None) -> bytes:
    """The tracing the page embeds: landmarks, labels and analysis lines drawn on the image, the points to check
    ringed, downscaled to at most :data:`PAGE_PIXELS` on its longer side."""
    from cephalo.visualize.overlay import draw_overlay

    canvas = draw_overlay(image, landmarks, names, flagged={name for name, _ in checks or ()}, lines=True)
    scale = PAGE_PIXELS / max(canvas.shape[:2])
    if scale < 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode the tracing as JPEG")
    return encoded.tobytes()


def render_patient_page(page: PageInput) -> str:
    row = page.analysis.row(0)
    readings = skeletal_summary(row)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>cephalo: {escape(page.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>Cephalometric analysis: {escape(page.title)}</h1>",
        _header(page),
        "<div class='top'>",
        _tracing(page),
        "<div>",
        "<div class='box'><h2>Summary</h2><ul>" + "".join(f"<li>{escape(r.text)}</li>" for r in readings)
        + "</ul></div>",
        _checks_box(page),
        "</div></div>",
        "<div class='tables'>",
        *(_analysis_table(page, name) for name in ANALYSES),
        _isbi_table(page),
        "</div>",
        f"<footer>{escape(NOT_A_DIAGNOSIS)}</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _header(page: PageInput) -> str:
    spacing = (f"{page.spacing_mm:g} mm/px ({page.spacing_source})" if page.spacing_mm is not None else
               "unknown: measurements in mm are not computed (give --spacing_mm)")
    rows = [("image", page.title), ("analysed", page.created), ("pixel spacing", spacing)]
    model = page.model
    if model is not None:
        stages = model.get("kind", "")
        rows.append(("model", f"{model.get('path', '')} ({stages}, SHA-256 {str(model.get('sha256', ''))[:12]})"))
        validation = model.get("validation") or {}
        if validation.get("val_mre_mm") is not None:
            rows.append(("model's validation", f"MRE {validation['val_mre_mm']:.2f} mm on its own validation split "
                                               "(chosen on it, so it flatters the model)"))
        if page.tta:
            rows.append(("test-time augmentation", f"{page.tta['global_views']} view(s), "
                                                   f"{page.tta['local_starts']} local start(s)"))
    rows += page.extra + [("cephalo", page.version)]
    cells = "".join(f"<span>{escape(k)}</span><span>{escape(str(v))}</span>" for k, v in rows)
    return f"<div class='meta'>{cells}</div>"


def _tracing(page: PageInput) -> str:
    if page.image is None:
        return f"<div class='box no'>No tracing: {escape(page.image_note or 'the image is not available')}.</div>"
    data = base64.b64encode(tracing_jpeg(page.image, page.landmarks, page.names, page.checks)).decode("ascii")
    legend = ("<p class='legend'><span><i class='dot' style='background:#ff2828'></i>landmark</span>"
              + ("<span><i class='dot' style='border:2px solid #ffb000'></i>point to check</span>" if page.checks
                 else "") +
              "<span>lines: S-N, FH, MP, PP, N-Pog, A-B, incisor axes where their landmarks exist</span></p>")
    return (f"<figure style='margin:0'><img alt='tracing of {escape(page.title)}' "
            f"src='data:image/jpeg;base64,{data}'>{legend}</figure>")


def _checks_box(page: PageInput) -> str:
    if page.checks is None:
        body = ("<p class='no'>This model gives no uncertainty estimate, so no point is singled out: check every "
                "point.</p>")
    elif not page.checks:
        body = "<p>No landmark's estimated error is above the flagging threshold.</p>"
    else:
        body = "<ul>" + "".join(f"<li><b>{escape(name)}</b>: estimated error {error:.1f} mm</li>"
                                for name, error in page.checks) + "</ul>"
    if page.flagged_measures:
        body += ("<p>Within the landmarks' expected errors these readings could change: "
                 + escape("; ".join(_reading_name(r) for r in page.flagged_measures)) + ".</p>")
    return f"<div class='box check'><h2>Points to check</h2>{body}</div>"


def _reading_name(reading: str) -> str:
    """``"SN_MP: vs norm"`` -> ``"SN to mandibular plane (against its norm)"``; ``"ANB: ISBI class"`` -> ``"ANB
    (ISBI class)"``."""
    name, _, kind = reading.partition(": ")
    if kind == "vs norm" and name in BY_NAME:
        return f"{BY_NAME[name].title} (against its norm)"
    return f"{name} ({kind})" if kind else reading


def _why_unavailable(page: PageInput, m: Measurement) -> str:
    index = {n: k for k, n in enumerate(page.names)}
    if any(n not in index for n in m.landmarks):  # the landmark set has no such point
        return page.analysis.unavailable.get(m.name, "a landmark it needs is not in this landmark set")
    missing = [n for n in m.landmarks if not np.isfinite(page.landmarks[index[n]]).all()]
    if missing:
        return f"needs {', '.join(missing)}, missing on this image"
    if m.unit == "mm" and page.spacing_mm is None:
        return "in mm, and the pixel spacing is unknown"
    return page.analysis.unavailable.get(m.name, "could not be computed (its landmarks coincide)")


def _deviation(m: Measurement, value: float) -> str:
    sd = deviation_sd(m, value)
    if sd is not None:
        return f"{round(sd, 1) + 0.0:+.1f} SD"  # + 0.0: no "-0.0"
    if m.within is None:
        return ""
    low, high = m.within
    unit = {"deg": "°", "mm": " mm", "%": " %"}.get(m.unit, "")
    digits = 2 if m.unit == "ratio" else 1
    if value < low:
        return f"{value - low:+.{digits}f}{unit}"
    if value > high:
        return f"+{value - high:.{digits}f}{unit}"
    return "in range"


def _analysis_table(page: PageInput, analysis: str) -> str:
    rows = []
    for m in page.analysis.measurements:
        if m.analysis != analysis:
            continue
        value = page.analysis.values[m.name][0]
        if not np.isfinite(value):
            rows.append(f"<tr><td>{escape(m.title)}</td><td class='na' colspan='4'>not available: "
                        f"{escape(_why_unavailable(page, m))}</td></tr>")
            continue
        words = verdict(m, value) or ""
        off = " class='off'" if words.startswith(("above", "below")) else ""
        rows.append(f"<tr{off}><td>{escape(m.title)}</td><td>{escape(format_value(m.name, value))}</td>"
                    f"<td>{escape(m.norm_text)}</td><td>{escape(_deviation(m, value))}</td>"
                    f"<td class='w'>{escape(words)}</td></tr>")
    if not rows:
        return ""
    return (f"<section><h2>{escape(analysis)}</h2><table><thead><tr><th>measurement</th><th>value</th><th>norm</th>"
            f"<th>deviation</th><th>reading</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _isbi_table(page: PageInput) -> str:
    rows = []
    for name, rule in ISBI_CLASSES.items():
        value = page.analysis.values[rule.measure][0]
        code = int(page.analysis.classes[name][0])
        shown = format_value(rule.measure, value) if np.isfinite(value) else "n/a"
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(shown)}</td>"
                    f"<td>{rule.low:g}-{rule.high:g}</td><td class='w'>{escape(rule.word(code) or 'not available')}"
                    f"</td></tr>")
    return ("<section><h2>ISBI 2015 challenge classes</h2><table><thead><tr><th>measure</th><th>value</th>"
            "<th>class 1 range</th><th>class</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<p class='no'>The challenge's own thresholds, kept apart from the clinical norms above; they can "
            "disagree (ANB 2.2° is within Steiner's norm and ISBI class III). FMA is S-N to Go-Gn, MW the "
            "incisal-tip distance. Facial heights have no norm: they scale with the patient.</p></section>")


def write_page(folder, stem: str, page: PageInput) -> dict:
    """Write ``<folder>/<stem>.html`` (atomically); returns its entry for :func:`render_index`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text(Path(folder) / f"{stem}.html", render_patient_page(page))
    sagittal, vertical = skeletal_summary(page.analysis.row(0))
    checks = "no estimate" if page.checks is None else len(page.checks)
    return {"page": f"{stem}.html", "image": page.title, "summary": f"{sagittal.text}; {vertical.text}",
            "checks": checks}


def write_index(folder, entries: list[dict], title: str) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text(Path(folder) / "index.html", render_index(entries, title))


def render_index(entries: list[dict], title: str) -> str:
    """The index of a folder of pages: ``entries`` of ``{"page", "image", "summary", "checks"}``."""
    rows = "".join(
        f"<tr><td><a href='{escape(e['page'], quote=True)}'>{escape(e['image'])}</a></td>"
        f"<td class='w'>{escape(e['summary'])}</td><td>{escape(str(e['checks']))}</td></tr>" for e in entries)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cephalo: "
            f"{escape(title)}</title><style>{_CSS}</style></head><body><main><h1>{escape(title)}</h1>"
            "<table><thead><tr><th>image</th><th>summary</th><th>points to check</th></tr></thead>"
            f"<tbody>{rows}</tbody></table><footer>{escape(NOT_A_DIAGNOSIS)}</footer></main></body></html>")
