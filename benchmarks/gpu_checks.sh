#!/usr/bin/env bash
# The GPU checks and figures, stage by stage (each stage fits a 10-minute slot):
#   bash benchmarks/gpu_checks.sh quick|parity|doctor|sync|bench-w18|bench-w32|presets|oom|refine|all
# quick (run it first; no compiling, aimed at a few minutes): the host-sync check of the training step (40 s on an
# H200); cephalo doctor at 1024² for HRNet-W32 under the 8 GiB budget without compile modes (correctness of every
# eager fast path, peak memory at micro-batch 1, 2, 4, speed, the recommended settings run for a few updates); the
# user's current setup against all safe techniques but compile. A part that fails is reported in the log and the
# next part still runs. Compiling is left to doctor and bench-*: on an H200 with 16 CPU cores (2026-12-04) the
# doctor's correctness section with one compile mode had not finished after 4 min 50 s, and a compiled bench row
# not after 2 min 45 s (benchmarks/gpu_h200.md): give those stages a slot of their own.
# parity (~1 min): every backbone against timm's with the same weights, float64 (needs timm; benchmarks/timm_parity.py).
# doctor: the full doctor (default and reduce-overhead compile modes) and the prefetcher's GPU-only test (it must
# FAIL with the stream wait removed).
# refine (real data; ~8 min): HRNet-W32 in one stage at 1024² against a 512² global stage + the local stage, the
# same --time_budget (3m) each, on the seeded 120/30 split; the best validation MRE of each. It needs the ISBI
# images in the working tree: cp -r ../shared/data/isbi2015-train gpu-data/ (git-ignored, 46 MB; carry gpu-data).
# Summaries go to $RESULTS (the device tool's $OUT when set, else gpu-results/): at most 8 files a stage, one log
# per stage. Caches, runs and checkpoints go to $WORK (default $TMPDIR/cephalo-gpu-work), never among them.
# ARCHIVE=FILE.tar.gz packs $RESULTS into that one file after every stage (for tools that return few files).
# Runs from a source checkout (PYTHONPATH=src): nothing to install beyond torch, numpy, opencv and tqdm.
# A dry run of the script itself on a CPU (compile left out: a cold compile takes minutes here):
#   SIZE=64 DEVICE=cpu UPDATES=1 TECHNIQUES=baseline,current,channels_last COMPILE=none bash benchmarks/gpu_checks.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-${OUT:-gpu-results}}
WORK=${WORK:-${TMPDIR:-/tmp}/cephalo-gpu-work}
SIZE=${SIZE:-1024}        # network input, H = W
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-8}       # GiB: the user's RTX 3070 Ti, emulated with --vram_budget_gb
UPDATES=${UPDATES:-5}     # measured optimizer updates per bench row
TECHNIQUES=${TECHNIQUES:-all}
COMPILE=${COMPILE:-default,reduce-overhead}  # the doctor's compile modes ("none": no compiling)
PYTHON=${PYTHON:-$(command -v python >/dev/null && echo python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" CEPHALO_CACHE="$WORK/cache"
mkdir -p "$RESULTS" "$WORK"
"$PYTHON" -c "import torch, numpy, cv2, tqdm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$RESULTS/nvidia-smi.txt"
cephalo() { "$PYTHON" -m cephalo "$@"; }
train_args=(--image_size "$SIZE" "$SIZE" --device "$DEVICE" --vram_budget_gb "$BUDGET" --epochs 1 --no_progress
            --output_dir "$WORK/runs")

bench() {  # the user's setup (batch 1 x 8) and every technique, under the 8 GB budget: bench.md, bench.json
  cephalo bench --model "$1" --image_size "$SIZE" "$SIZE" --batch_size 1 --gradient_accumulation_steps 8 \
    --device "$DEVICE" --vram_budget_gb "$BUDGET" --warmup_updates 2 --measure_updates "$UPDATES" --techniques "$TECHNIQUES" \
    --output_dir "$RESULTS/bench-$1-$SIZE"
}

doctor() {  # the doctor's table for the user's model under the budget: doctor.md, doctor.json
  cephalo doctor --device "$DEVICE" --model hrnet --image_size "$SIZE" "$SIZE" --vram_budget_gb "$BUDGET" \
    --compile_modes "$COMPILE" --speed_updates "${DOCTOR_UPDATES:-3}" --proof_updates "${DOCTOR_UPDATES:-3}" \
    --out "$RESULTS/doctor-hrnet-$SIZE" || echo "doctor: some check FAILED (see the table)"
}

prefetch_test() {  # the prefetcher check passes, and fails with the stream wait removed (CUDA only)
  "$PYTHON" -m pytest -q -p no:cacheprovider tests/doctor/test_doctor.py -k prefetcher 2>&1 || echo "prefetcher test FAILED"
}

presets() {  # safe, aggressive and auto presets with the user's model: peak memory is in each epoch line
  for preset in rtx3070ti rtx3070ti-aggressive auto; do
    cephalo train --preset "$preset" --model hrnet "${train_args[@]}" --max_updates 12 --run_name "$preset" 2>&1
  done
}

oom() {  # batch 8 in one forward pass does not fit 8 GiB at 1024²: recovery must halve it and go on
  cephalo train --model hrnet --batch_size 8 --gradient_accumulation_steps 1 --mixed_precision "${train_args[@]}" \
    --max_updates 6 --run_name oom-recovery 2>&1
  cephalo train --model hrnet --batch_size 1 --gradient_accumulation_steps 8 --mixed_precision \
    --gradient_checkpointing "${train_args[@]}" --max_updates 6 --run_name checkpointing 2>&1
}

sync() {  # the step's host syncs under torch.cuda.set_sync_debug_mode("error"): only the marked ones may sync
  "$PYTHON" benchmarks/sync_check.py --device "$DEVICE" --image_size "$SIZE" --updates 6 --out "$RESULTS/sync_check.json"
}

refine() {  # equal budgets on real data: one stage at 1024² vs 512² + refine (refine.md)
  local data=${DATA:-gpu-data/isbi2015-train/landmarks.csv} budget=${REFINE_BUDGET:-3m}
  local common=(--dataset_path "$data" --model hrnet --mixed_precision --channels_last --use_ema --time_budget "$budget"
                --device "$DEVICE" --no_progress --output_dir "$WORK/runs")
  cephalo train "${common[@]}" --image_size 1024 1024 --run_name w32-1024 2>&1 | tee "$RESULTS/w32-1024.log" || true
  cephalo train "${common[@]}" --image_size 512 512 --refine --run_name w32-512-refine 2>&1 \
    | tee "$RESULTS/w32-512-refine.log" || true
  { echo "# refine stage: $(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "$DEVICE")"
    echo "budget $budget each, $data, seeded 120/30 split"
    for run in w32-1024 w32-512-refine; do
      echo "## $run"; grep -E "^(time budget|local stage time budget|best)|best refined" "$RESULTS/$run.log" || true
    done; } > "$RESULTS/refine.md"
}

stage() {  # run a stage with its output in one log: $RESULTS/<stage>.log
  local name=$1 status=0; shift
  { echo "== $name: $(date -u +%FT%TZ)"; "$@"; echo "== $name done: $(date -u +%FT%TZ)"; } 2>&1 \
    | tee -a "$RESULTS/$name.log" || status=$?
  if [[ -n ${ARCHIVE:-} ]]; then tar czf "$ARCHIVE.tmp" -C "$RESULTS" . && mv "$ARCHIVE.tmp" "$ARCHIVE"; fi
  return "$status"
}

parity() {  # our backbones against timm's, same weights, float64 (timm_parity.json)
  "$PYTHON" benchmarks/timm_parity.py --device "$DEVICE" --image_size "${PARITY_SIZE:-256}" \
    --out "$RESULTS/timm_parity.json" || echo "parity: FAILED or not run (see above)"
}

quick() {
  sync || echo "sync: FAILED (exit $?)"
  COMPILE=none DOCTOR_UPDATES=2 doctor
  TECHNIQUES=current,all_safe_eager UPDATES=3 bench hrnet_w32 || echo "bench: FAILED (exit $?)"
}

case "${1:-all}" in
  quick) stage quick quick ;;
  parity) stage parity parity ;;
  doctor) stage doctor doctor; stage doctor prefetch_test ;;
  sync) stage sync sync ;;
  bench-w18) stage bench-w18 bench hrnet_w18 ;;
  bench-w32) stage bench-w32 bench hrnet_w32 ;;
  presets) stage presets presets ;;
  oom) stage oom oom ;;
  refine) stage refine refine ;;
  all) stage sync sync; stage doctor doctor; stage bench-w18 bench hrnet_w18; stage bench-w32 bench hrnet_w32
       stage presets presets; stage oom oom ;;
  *) echo "usage: $0 quick|parity|doctor|sync|bench-w18|bench-w32|presets|oom|refine|all" >&2; exit 2 ;;
esac
