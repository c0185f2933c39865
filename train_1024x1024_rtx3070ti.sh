#!/usr/bin/env bash
# The user's safe settings for an 8 GB card (RTX 3070 Ti): batch 1 x accumulation 8 (effective batch 8),
# fp16 mixed precision, EMA, 2 loader workers. Extra flags are passed on (e.g. --dataset_path /data/Aariz).
set -euo pipefail
cd "$(dirname "$0")"
exec python train_1024x1024.py --dataset_path Aariz --model hrnet --image_size 1024 1024 --preset rtx3070ti \
    --epochs 200 --lr 3e-4 --warmup_epochs 10 "$@"
