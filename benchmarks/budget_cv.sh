#!/bin/bash
# Equal-budget 5-fold cross-validation arms (benchmarks/budget_cv.md), run one after another: never two at once, and
# nothing else on the machine, since a time budget turns a slower machine into fewer updates.
#   bash benchmarks/budget_cv.sh OUT refine256 global256 global384 ...
# BUDGET=10m sets the budget (default 6m); NESTED=1 holds each fold out with --test_fold (cross_validation.py --nested)
# then: PYTHONPATH=src python benchmarks/budget_cv_table.py OUT/*/cv.json
set -u
cd "$(dirname "$0")/.."
OUT=$1; shift
mkdir -p "$OUT"
BUDGET=${BUDGET:-6m}
NESTED=${NESTED:+--nested}
COMMON="--mixed_precision --channels_last --use_ema --time_budget $BUDGET"
arm() { name=$1; shift
  echo "=== $name start $(date -Is)"
  PYTHONPATH=src python benchmarks/cross_validation.py --dataset_path ../shared/data/isbi2015-train/landmarks.csv \
    --folds 5 --out "$OUT/$name" $NESTED -- $COMMON "$@" > "$OUT/$name.log" 2>&1
  rc=$?; echo "=== $name end $(date -Is) rc=$rc"; }
for a in "$@"; do
  case $a in
    refine256) arm refine256 --image_size 256 256 --refine ;;
    global256) arm global256 --image_size 256 256 ;;
    global384) arm global384 --image_size 384 384 ;;
    global512) arm global512 --image_size 512 512 ;;
    refine384) arm refine384 --image_size 384 384 --refine ;;
    # a coarser global stage: it only has to land within the patch, and buys more epochs for the hard landmarks
    refine192) arm refine192 --image_size 192 192 --refine ;;
    refine160) arm refine160 --image_size 160 160 --refine ;;
    refine128) arm refine128 --image_size 128 128 --refine ;;
    refine256-g67) arm refine256-g67 --image_size 256 256 --refine --global_share 0.67 ;;
    refine256-g33) arm refine256-g33 --image_size 256 256 --refine --global_share 0.33 ;;
    # the same flags after a code change (the arm's name says which), e.g. per-landmark refinement:
    refine256-perlandmark) arm refine256-perlandmark --image_size 256 256 --refine ;;
    refine256-perlandmark-g67) arm refine256-perlandmark-g67 --image_size 256 256 --refine --global_share 0.67 ;;
    # the local stage's options at the default split (per-landmark refinement):
    refine256-mm04) arm refine256-mm04 --image_size 256 256 --refine --patch_mm 0.4 ;;
    refine256-mm03) arm refine256-mm03 --image_size 256 256 --refine --patch_mm 0.3 ;;
    refine256-p96) arm refine256-p96 --image_size 256 256 --refine --patch_size 96 ;;
    refine256-w18) arm refine256-w18 --image_size 256 256 --refine --local_model hrnet_w18 ;;
    # a second, coarser channel in each patch (4x the field of view at 0.8 mm/px) for gonion / porion / articulare
    refine160-ctx4) arm refine160-ctx4 --image_size 160 160 --refine --patch_context 4 ;;
    *) echo "unknown arm $a" ;;
  esac
done
