"""The per-patient page, rendered as a user gets it and looked at: ``cephalo analyze --report`` on a landmarks CSV
(by default the built-in synthetic dataset's ground truth), then headless Chromium takes a screenshot of one page
and prints it to PDF (the page count and size are printed).

    python benchmarks/patient_page.py --out /tmp/page --screenshot benchmarks/patient_page_synthetic.png
    python benchmarks/patient_page.py --csv ../shared/data/isbi2015-train/landmarks.csv --out /tmp/page-isbi

Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path


def synthetic_csv() -> Path:
    from cephalo.datasets.sources import load_records
    from cephalo.preprocessing.options import DataOptions

    records = load_records(DataOptions().dataset_spec(), "test")  # generates the dataset on first use
    return Path(records[0].image_path).parents[1] / "landmarks.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, help="landmarks CSV (default: the synthetic dataset's)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--page", default=None, help="which page to screenshot (default: the first)")
    parser.add_argument("--screenshot", type=Path, help="where to write the PNG (default: in --out)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("needs Chromium: apt-get install chromium")
    csv = args.csv or synthetic_csv()
    pages = args.out / "pages"
    command = [sys.executable, "-m", "cephalo", "analyze", str(csv), "--out", str(args.out), "--report", str(pages)]
    print("$ " + " ".join(command[2:]))
    subprocess.run(command, check=True)
    page = pages / (args.page or sorted(p.name for p in pages.glob("*.html") if p.name != "index.html")[0])
    shot = args.screenshot or args.out / f"{page.stem}.png"
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=900,1500", page.resolve().as_uri()],
                   check=True, capture_output=True)
    pdf = args.out / f"{page.stem}.pdf"
    subprocess.run([*browser, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.resolve().as_uri()],
                   check=True, capture_output=True)
    data = pdf.read_bytes()
    count = len(re.findall(rb"/Type\s*/Page(?!s)", data))
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    size = f"{float(box.group(1)):.0f} x {float(box.group(2)):.0f} pt" if box else "unknown size"
    print(f"page {page}: screenshot {shot}; printed: {count} page(s) of {size} (A4: 595 x 842 pt), "
          f"{page.stat().st_size / 1e3:.0f} kB of HTML")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
