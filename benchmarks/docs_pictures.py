"""The documentation's pictures, made with the product's own commands from the built-in synthetic data (no
download) and committed under docs/images/ (CI checks that they exist; it does not remake them):

- ``learning_curve.png``: the main job (``cephalo train --mixed_precision --channels_last``), its metrics.jsonl;
- ``overlay.png``: ``cephalo predict --overlay_analysis`` of one synthetic test image with that model;
- ``patient_page.png``: ``cephalo predict --report``'s page of that image, screenshotted by headless Chromium.

    python benchmarks/docs_pictures.py --work /tmp/cephalo-demo     # about 4 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def cephalo(*args: str) -> None:
    print("$ cephalo " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "cephalo", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (runs, predictions)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the pictures go (default docs/images)")
    args = parser.parse_args()
    import cv2

    from cephalo.datasets.sources import load_records
    from cephalo.preprocessing.options import DataOptions
    from cephalo.visualize.plots import plot_learning_curve

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("needs Chromium: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.work / "runs" / "main"
    if not (run / "best.pt").is_file():
        cephalo("train", "--mixed_precision", "--channels_last", "--output_dir", str(args.work / "runs"),
                "--run_name", "main", "--no_progress")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    plot_learning_curve(rows, args.out / "learning_curve.png", "cephalo train on the synthetic dataset (main job)")
    source = load_records(DataOptions().dataset_spec(), "test")[0].image_path
    image = Path("scans") / "patient_0001.png"  # a short relative name for the title strip and the page
    (args.work / "scans").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, args.work / image)
    predictions = args.work / "predictions"
    subprocess.run([sys.executable, "-m", "cephalo", "predict", "--checkpoint", "runs/main/best.pt", str(image),
                    "--spacing_mm", "0.42", "--out", "predictions", "--overlay_analysis", "--report", "--overwrite",
                    "--no_progress"], check=True, cwd=args.work)
    overlay = cv2.imread(str(predictions / f"{image.stem}_overlay.jpg"))
    cv2.imwrite(str(args.out / "overlay.png"), overlay)
    page = predictions / "report" / f"{image.stem}.html"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={args.out / 'patient_page.png'}", "--window-size=900,1500", page.resolve().as_uri()],
                   check=True, capture_output=True)
    for name in ("learning_curve.png", "overlay.png", "patient_page.png"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
