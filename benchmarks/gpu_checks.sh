#!/usr/bin/env bash
# The GPU checks and figures, stage by stage (each stage fits a 10-minute slot):
#   bash benchmarks/gpu_checks.sh quick|sync|bench-w18|bench-w32|presets|oom|all
# quick (run it first, ~5 min): the host-sync check of the training step, then a short 1024² bench of HRNet-W18
# (baseline, current, channels_last, compile, all_safe) under the 8 GiB budget.
# Summaries (bench tables, logs, nvidia-smi, the sync check) go to $RESULTS: the device tool's $OUT when set, else
# gpu-results/; caches, runs and checkpoints to $WORK (default $TMPDIR/cephalo-gpu-work), never among the
# summaries. Runs from a source checkout (PYTHONPATH=src): nothing to install beyond torch, numpy, opencv and tqdm.
# A dry run of the script itself on a CPU (compile rows left out: a cold compile takes minutes here):
#   SIZE=64 DEVICE=cpu UPDATES=1 TECHNIQUES=baseline,current,channels_last bash benchmarks/gpu_checks.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-${OUT:-gpu-results}}
WORK=${WORK:-${TMPDIR:-/tmp}/cephalo-gpu-work}
SIZE=${SIZE:-1024}        # network input, H = W
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-8}       # GiB: the user's RTX 3070 Ti, emulated with --vram_budget_gb
UPDATES=${UPDATES:-5}     # measured optimizer updates per bench row
TECHNIQUES=${TECHNIQUES:-all}
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" CEPHALO_CACHE="$WORK/cache"
mkdir -p "$RESULTS" "$WORK"
"$PYTHON" -c "import torch, numpy, cv2, tqdm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$RESULTS/nvidia-smi.txt"
cephalo() { "$PYTHON" -m cephalo "$@"; }
train_args=(--image_size "$SIZE" "$SIZE" --device "$DEVICE" --vram_budget_gb "$BUDGET" --epochs 1 --no_progress
            --output_dir "$WORK/runs")

bench() {  # the user's setup (batch 1 x 8) and every technique, under the 8 GB budget
  cephalo bench --model "$1" --image_size "$SIZE" "$SIZE" --batch_size 1 --gradient_accumulation_steps 8 \
    --device "$DEVICE" --vram_budget_gb "$BUDGET" --warmup_updates 2 --measure_updates "$UPDATES" --techniques "$TECHNIQUES" \
    --output_dir "$RESULTS/bench-$1-$SIZE" | tee "$RESULTS/bench-$1-$SIZE.log"
}

presets() {  # safe, aggressive and auto presets with the user's model: peak memory is in each epoch line
  for preset in rtx3070ti rtx3070ti-aggressive auto; do
    cephalo train --preset "$preset" --model hrnet "${train_args[@]}" --max_updates 12 --run_name "$preset" \
      2>&1 | tee "$RESULTS/preset-$preset.log"
  done
}

oom() {  # batch 8 in one forward pass does not fit 8 GiB at 1024²: recovery must halve it and go on
  cephalo train --model hrnet --batch_size 8 --gradient_accumulation_steps 1 --mixed_precision "${train_args[@]}" \
    --max_updates 6 --run_name oom-recovery 2>&1 | tee "$RESULTS/oom-recovery.log"
  cephalo train --model hrnet --batch_size 1 --gradient_accumulation_steps 8 --mixed_precision \
    --gradient_checkpointing "${train_args[@]}" --max_updates 6 --run_name checkpointing \
    2>&1 | tee "$RESULTS/checkpointing.log"  # against preset-rtx3070ti.log: the memory that checkpointing saves
}

sync() {  # the step's host syncs under torch.cuda.set_sync_debug_mode("error"): only the marked ones may sync
  "$PYTHON" benchmarks/sync_check.py --device "$DEVICE" --image_size "$SIZE" --updates 6 --out "$RESULTS/sync_check.json" \
    2>&1 | tee "$RESULTS/sync_check.log"
}

case "${1:-all}" in
  quick) sync; TECHNIQUES=baseline,current,channels_last,compile,all_safe UPDATES=3 bench hrnet_w18 ;;
  sync) sync ;;
  bench-w18) bench hrnet_w18 ;;
  bench-w32) bench hrnet_w32 ;;
  presets) presets ;;
  oom) oom ;;
  all) sync; bench hrnet_w18; bench hrnet_w32; presets; oom ;;
  *) echo "usage: $0 quick|sync|bench-w18|bench-w32|presets|oom|all" >&2; exit 2 ;;
esac
