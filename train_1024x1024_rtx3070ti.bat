@echo off
rem The user's safe settings for an 8 GB card (RTX 3070 Ti): batch 1 x accumulation 8 (effective batch 8),
rem fp16 mixed precision, EMA, 2 loader workers. Extra flags are passed on, e.g.:
rem   train_1024x1024_rtx3070ti.bat --dataset_path D:\data\Aariz --run_name aariz-w32
rem Out of GPU memory, training halves the micro-batch (same effective batch), then switches on gradient
rem checkpointing; if even that does not fit it stops and prints what to change (the checkpoints are kept).
rem To try another card's budget: add --vram_budget_gb 8; to let it find the micro-batch: --preset auto.
python train_1024x1024.py --dataset_path Aariz --model hrnet --image_size 1024 1024 --preset rtx3070ti --epochs 200 --lr 3e-4 --warmup_epochs 10 %*
if errorlevel 1 pause
