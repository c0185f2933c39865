"""Figures and files of a benchmark: speed-ups against the reference rows, memory, the derived save-frequency
figure, the machine description, and ``bench.md`` / ``bench.json``. Only measured values; a cell without one says
why."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from cephalo.atomic import write_text
from cephalo.bench.techniques import CPU_NOTES, Row, save_frequency_gain

SAVE_EVERY = 5
UNSTEADY = 1.5  # fastest / slowest single update above this: the row's figure is flagged as unsteady
COLUMNS = ("#", "technique", "claimed (seed notes)", "images/s", "vs current", "vs baseline", "peak memory",
           "first updates s", "note")


def measured(result: dict | None) -> bool:
    return result is not None and "error" not in result


def speedup_text(result: dict, reference: dict | None) -> str:
    """Throughput change of ``result`` against ``reference`` as a signed percentage (n/a without a reference)."""
    if not measured(reference):
        return "n/a"
    change = result["images_per_s"] / reference["images_per_s"] - 1
    return percent(change) if abs(change) >= 0.005 else "±0 %"


def percent(fraction: float, digits: int = 0, sign: bool = True) -> str:
    """0.234 -> '+23 %' (a real minus sign for negative values), like the claims in the user's notes."""
    return f"{fraction * 100:{'+' if sign else ''}.{digits}f} %".replace("-", "−")


def rate_text(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def size_text(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.0f} MiB"


def memory_text(result: dict) -> str:
    peak = result.get("peak_memory_bytes")
    if peak is None:
        return "not measured (platform gives no peak RSS)"
    if result.get("memory_kind") == "cuda_max_allocated":
        reserved = result.get("peak_reserved_bytes")
        return f"{size_text(peak)} allocated" + (f" ({size_text(reserved)} reserved)" if reserved else "")
    growth = result.get("rss_growth_bytes")
    return f"{size_text(peak)} RSS" + (f" (+{size_text(growth)} in segment)" if growth is not None else "")


def memory_change(result: dict, reference: dict | None) -> float | None:
    """Memory of ``result`` relative to ``reference`` - 1: peak allocated on CUDA, RSS growth during the segment on
    CPU (the peak RSS includes the interpreter and the dataset, which no technique changes)."""
    if not measured(reference):
        return None
    key = "peak_memory_bytes" if result.get("memory_kind") == "cuda_max_allocated" else "rss_growth_bytes"
    a, b = result.get(key), reference.get(key)
    return a / b - 1 if a is not None and b else None


def load_average() -> float | None:
    """The 1-minute load average (other work competing with the bench), where the platform has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info(device: dict | None) -> dict:
    """Platform, CPU model, core count, torch version, and the device the rows ran on (from a worker)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device or {"name": "unknown (no row ran)"}}
    return info


def machine_line(m: dict) -> str:
    d = m["device"]
    device = d["name"] + (f", {d['total_memory_bytes'] / 2**30:.1f} GiB" if "total_memory_bytes" in d else "")
    load = m.get("load_average_1min") or {}
    load_text = (f"; load average {load['before']:.1f} before, {load['after']:.1f} after the rows"
                 if load.get("before") is not None and load.get("after") is not None else "")
    return (f"{m['platform']}, CPU {m['cpu']} ({m['cpu_count']} logical cores, {m['torch_threads']} torch threads), "
            f"Python {m['python']}, torch {m['torch']}, device {device}{load_text}")


def table_row(row: Row, results: dict[str, dict | None], epoch_images: int) -> dict:
    """One row's cells (and its JSON entry)."""
    result, current, baseline = results.get(row.name), results.get("current"), results.get("baseline")
    cells = {"#": row.number, "technique": row.name, "claimed (seed notes)": row.claimed}
    notes = [row.note] if row.note else []
    entry = {"name": row.name, "number": row.number, "claimed": row.claimed, "overrides": row.overrides,
             "result": result}
    if row.name == "save_frequency":
        return save_frequency_row(cells, entry, current, epoch_images)
    if result is None:
        cells.update({c: "not measured" for c in COLUMNS[3:8]})
    elif "error" in result:
        cells.update({c: "error" for c in COLUMNS[3:8]})
        notes.insert(0, f"error: {result['error']}")
    else:
        other_stage = row.name == "local_stage"  # its images are not the global stage's: no ratio
        cells.update({"images/s": rate_text(result["images_per_s"]),
                      "vs current": "—" if row.name == "current" or other_stage else speedup_text(result, current),
                      "vs baseline": "—" if row.name == "baseline" or other_stage else speedup_text(result,
                                                                                                  baseline),
                      "peak memory": memory_text(result),
                      "first updates s": f"{result['first_updates_seconds']:.1f}"})
        entry["vs_current"] = None if row.name == "current" or other_stage else ratio(result, current)
        entry["vs_baseline"] = None if row.name == "baseline" or other_stage else ratio(result, baseline)
        if row.name == "gradient_checkpointing":
            change = memory_change(result, current)
            entry["memory_vs_current"] = change
            what = "peak allocated" if result.get("memory_kind") == "cuda_max_allocated" else "RSS growth in segment"
            change_text = percent(change) if change is not None else "n/a (no current figure)"
            cells["peak memory"] += f"; {change_text} vs current"
            notes.append(f"memory figure: {what}")
        if result["device"]["type"] == "cpu" and row.name in CPU_NOTES:
            notes.append(CPU_NOTES[row.name])
        if row.name not in ("baseline", "current"):  # what setup said for this row and not for current
            notes += [n for n in result.get("notes", []) if n not in (current or {}).get("notes", [])]
        rates = result.get("update_images_per_s") or []
        if len(rates) > 1 and min(rates) > 0 and max(rates) / min(rates) > UNSTEADY:
            notes.append(f"unsteady: single updates ran at {rate_text(min(rates))}–{rate_text(max(rates))} img/s "
                         "(epoch starts or a busy machine; more --measure_updates averages them)")
        if result.get("skipped_updates"):
            notes.append(f"{result['skipped_updates']} update(s) skipped (non-finite)")
        if "patches_per_s" in result:
            notes.append(f"{rate_text(result['patches_per_s'])} patches/s")
    cells["note"] = "; ".join(notes)
    entry["cells"] = cells
    return entry


def ratio(result: dict, reference: dict | None) -> float | None:
    return result["images_per_s"] / reference["images_per_s"] if measured(reference) else None


def save_frequency_row(cells: dict, entry: dict, current: dict | None, epoch_images: int) -> dict:
    """Row 7, derived from the save the current row timed."""
    cells.update({"images/s": "n/a (not per step)", "vs baseline": "n/a", "peak memory": "n/a",
                  "first updates s": "n/a"})
    if not measured(current) or "save_seconds" not in current:
        why = (current or {}).get("save_error") or (current or {}).get("error") or "the current row was not run"
        cells["vs current"], cells["note"] = "not measured", f"needs the save timed in the current row: {why}"
    else:
        d = save_frequency_gain(current["save_seconds"], current["images_per_s"], epoch_images, SAVE_EVERY)
        entry["derived"] = {**d, "save_seconds": current["save_seconds"], "epoch_images": epoch_images,
                            "checkpoint_bytes": current["checkpoint_bytes"], "every": SAVE_EVERY}
        digits = 1 if d["gain"] >= 0.001 else 2  # a fast save on a slow machine: 0.05 %, not 0.0 %
        cells["vs current"] = f"−{percent(d['gain'], digits, sign=False)} time (derived)"
        cells["note"] = (f"derived from the measured save time: one last.pt ({size_text(current['checkpoint_bytes'])})"
                         f" took {current['save_seconds']:.2f} s = {percent(d['share'], digits, sign=False)} of an epoch of {epoch_images} "
                         f"images at the current {rate_text(current['images_per_s'])} img/s (validation not "
                         f"included); every {SAVE_EVERY} epochs leaves out {SAVE_EVERY - 1}/{SAVE_EVERY} of the saves;"
                         " best.pt is still written on each improvement")
    entry["cells"] = cells
    return entry


def build_report(rows: list[Row], settings: dict, command: str, data_note: str, epoch_images: int,
                 load: dict | None = None) -> dict:
    """Everything bench.json holds; ``load`` is the load average before and after the rows."""
    results = {row.name: row.extra.get("result") for row in rows}
    device = next((r["device"] for r in results.values() if measured(r)), None)
    machine = {**machine_info(device), "load_average_1min": load}
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine,
            "settings": settings, "data": data_note,
            "rows": [table_row(row, results, epoch_images) for row in rows]}


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"# cephalo bench: {s['model']} at {s['image_size'][0]}x{s['image_size'][1]}", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- machine: {machine_line(report['machine'])}", f"- data: {report['data']}",
             f"- each row: a fresh process, {s['warmup_updates']} warm-up updates (timed apart: 'first updates s'), "
             f"then images/s over {s['measure_updates']} optimizer updates (batch {s['batch_size']} x accumulation "
             f"{s['gradient_accumulation_steps']}; baseline x 1), without validation; the synthetic training split is "
             "small, so epoch starts (worker start-up without persistent_workers) come more often than in a real "
             "epoch",
             "- peak memory: CUDA max allocated (reset after setup), or on CPU the process's peak RSS and its growth "
             "during the segment (DataLoader workers not included)", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for entry in report["rows"]:
        lines.append("| " + " | ".join(str(entry["cells"][c]).replace("|", "/") for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, output_dir: Path) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    md = write_text(output_dir / "bench.md", markdown(report))
    js = write_text(output_dir / "bench.json", json.dumps(report, indent=2, default=str) + "\n")
    return md, js
