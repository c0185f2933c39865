@echo off
rem The user's safe settings for an 8 GB card (RTX 3070 Ti): batch 1 x accumulation 8 (effective batch 8),
rem fp16 mixed precision, EMA, 2 loader workers. Extra flags are passed on, e.g.:
rem   train_1024x1024_rtx3070ti.bat --dataset_path D:\data\Aariz --run_name aariz-w32
rem If it runs out of memory: lower --image_size to 768 768 (or 512 512 for a test) or add --gradient_checkpointing.
python train_1024x1024.py --dataset_path Aariz --model hrnet --image_size 1024 1024 --preset rtx3070ti --epochs 200 --lr 3e-4 --warmup_epochs 10 %*
if errorlevel 1 pause
