"""The user's training script name: the same as ``cephalo train`` with the same flags, e.g.

    python train_1024x1024.py --dataset_path Aariz --model hrnet --image_size 1024 1024 --batch_size 1
        --gradient_accumulation_steps 8 --epochs 200 --lr 3e-4 --warmup_epochs 10 --mixed_precision --use_ema
        --num_workers 4 --use_compile --channels_last --early_stopping --patience 20
"""

from cephalo.cli.train import main

if __name__ == "__main__":  # guarded: DataLoader workers re-import this file under Windows' spawn
    raise SystemExit(main(prog="train_1024x1024.py"))
