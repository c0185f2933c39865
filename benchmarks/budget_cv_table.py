"""The table of an equal-budget cross-validation sweep (``benchmarks/budget_cv.sh``): each arm's MRE as mean ± SD
over its folds, fold by fold, SDR@2mm pooled, the worst landmarks, and whether the refined arms "win" by the rule
of issue 14: mean MRE at least 0.1 mm below the best global-only arm, no landmark more than 0.1 mm worse, and
gonion, porion and articulare better.

    PYTHONPATH=src python benchmarks/budget_cv_table.py /work/cv-sweeps/*/cv.json [--reference ARM]

``--reference ARM`` adds each arm's fold-by-fold (paired) difference from that arm: how options of one stage compare
with each other, the folds' own difficulty taken out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MUST_IMPROVE = ("Go", "Po", "Ar")  # gonion, porion, articulare: the hard low-contrast landmarks at 256²


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_json", nargs="+", type=Path, help="each arm's cv.json (the arm is its folder's name)")
    parser.add_argument("--reference", help="an arm: each arm's fold-by-fold difference from it")
    args = parser.parse_args()
    reference = args.reference
    arms = {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in args.cv_json}
    rows = ["| arm | train flags | MRE mm, mean ± SD over 5 folds | fold MREs | SDR@2mm pooled | Go / Po / Ar mm |",
            "|---|---|---:|---|---:|---|"]
    for name, cv in arms.items():
        mres = [f["mre_mm"] for f in cv["folds"]]
        lm = cv["per_landmark_mre_mm"]
        flags = " ".join(a for a in cv["train_args"] if a not in ("--mixed_precision", "--channels_last", "--use_ema"))
        flags = f"`{flags}`" + (" (nested: `--test_fold`)" if cv.get("nested") else "")
        rows.append(f"| {name} | {flags} | {np.mean(mres):.3f} ± {np.std(mres, ddof=1):.3f} | "
                    + " ".join(f"{m:.3f}" for m in mres) + f" | {cv['pooled']['sdr']['2mm']:.1f} % | "
                    + " / ".join(f"{lm[n]:.2f}" for n in MUST_IMPROVE) + " |")
    print("\n".join(rows))
    names = list(next(iter(arms.values()))["per_landmark_mre_mm"])
    print("\n| landmark | " + " | ".join(arms) + " |\n|---|" + "---:|" * len(arms))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{cv['per_landmark_mre_mm'][n]:.2f}" for cv in arms.values()) + " |")
    if reference:
        paired(arms, reference)
    global_only = {n: cv for n, cv in arms.items() if "--refine" not in cv["train_args"]}
    if not global_only:
        return
    best_name = min(global_only, key=lambda n: global_only[n]["mre_mm_mean_over_folds"])
    best = global_only[best_name]
    print(f"\nbest global-only arm: {best_name} ({best['mre_mm_mean_over_folds']:.3f} mm)")
    for name, cv in arms.items():
        if "--refine" not in cv["train_args"]:
            continue
        gain = best["mre_mm_mean_over_folds"] - cv["mre_mm_mean_over_folds"]
        change = {n: cv["per_landmark_mre_mm"][n] - v for n, v in best["per_landmark_mre_mm"].items()}
        worst = max(change, key=change.get)
        wins = gain >= 0.1 and change[worst] <= 0.1 and all(change[n] < 0 for n in MUST_IMPROVE)
        fold_gain = [b["mre_mm"] - f["mre_mm"] for b, f in zip(best["folds"], cv["folds"])]
        print(f"{name}: {gain:+.3f} mm better than {best_name} (per fold " + " ".join(f"{g:+.3f}" for g in fold_gain)
              + f"); worst landmark change {worst} {change[worst]:+.2f} mm; Go/Po/Ar "
              + " / ".join(f"{change[n]:+.2f}" for n in MUST_IMPROVE) + f" -> {'WINS' if wins else 'does not win'}")


def paired(arms: dict, reference: str) -> None:
    """Each arm against ``reference`` fold by fold: the MRE difference (negative: better), mean ± SD over folds."""
    ref = arms[reference]
    print(f"\n| arm | MRE minus {reference}'s, fold by fold (mm) | mean ± SD | folds better |\n|---|---|---:|---:|")
    for name, cv in arms.items():
        if name == reference:
            continue
        diff = np.array([f["mre_mm"] - r["mre_mm"] for f, r in zip(cv["folds"], ref["folds"])])
        print(f"| {name} | " + " ".join(f"{d:+.3f}" for d in diff) + f" | {diff.mean():+.3f} ± {diff.std(ddof=1):.3f}"
              f" | {int((diff < 0).sum())} of {len(diff)} |")


if __name__ == "__main__":
    main()
