"""Host syncs of the training step on a real device, for each stage: a few eager updates with every option of the
step on (augmentation, mixed precision, channels_last, accumulation, EMA, side-stream prefetch) and only the
intended syncs allowed (``cephalo.engine.runtime.host_sync``). ``--stage local``: the local stage's step, on a global model
trained for one update first.

On CUDA the updates run under ``torch.cuda.set_sync_debug_mode("error")``, so the first unmarked sync raises where
it happens (its traceback is printed); on a CPU every host read is counted through a TorchDispatchMode instead.

    PYTHONPATH=src python benchmarks/sync_check.py --device cuda --updates 6 --out gpu-results/sync_check.json
    PYTHONPATH=src python benchmarks/sync_check.py --device cuda --stage local --out gpu-results/sync_check_local.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import traceback
from pathlib import Path

import torch

from cephalo.artifact.checkpoint import GLOBAL, LOCAL
from cephalo.engine.config import TrainConfig
from cephalo.engine.run.pipeline import train
from cephalo.engine.runtime.host_sync import HostReads, cuda_sync_errors
from cephalo.engine.stages.global_stage import GlobalStage
from cephalo.engine.stages.local_stage import LocalStage
from cephalo.engine.step.loop import train_one_epoch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--model", default="hrnet_w18_small")
    parser.add_argument("--stage", default=GLOBAL, choices=(GLOBAL, LOCAL))
    parser.add_argument("--out", type=Path, help="JSON summary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(model=args.model, image_size=(args.image_size, args.image_size), device=args.device,
                             batch_size=2, gradient_accumulation_steps=2, mixed_precision=True, channels_last=True,
                             use_ema=True, augmentation="full", num_workers=2, log_every=2, progress=True,
                             output_dir=folder, cache_dir=str(Path(folder) / "cache"), local_model=args.model,
                             local_batch=2, local_accumulation_steps=2, local_augmentation="full")
        if args.stage == GLOBAL:
            t = GlobalStage(config)
        else:
            source = train(dataclasses.replace(config, max_updates=1, run_name="source", progress=False)).run_dir
            t = LocalStage(config, source / "best.pt")
        device = t.parts.device
        p = t.new_progress()
        train_one_epoch(t, p, after_update=lambda p: p.updates >= 1)  # warm-up: cuDNN picks its algorithms
        summary = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   "torch": torch.__version__, "precision": str(t.parts.precision), "updates": args.updates,
                   "image_size": args.image_size, "model": args.model, "stage": args.stage}
        target = p.updates + args.updates
        try:
            with HostReads() as reads:
                if device.type == "cuda":
                    with cuda_sync_errors():
                        train_one_epoch(t, p, after_update=lambda p: p.updates >= target)
                else:
                    train_one_epoch(t, p, after_update=lambda p: p.updates >= target)
        except RuntimeError as e:  # an unmarked sync under the CUDA debug mode
            traceback.print_exc()
            summary.update(result="FAIL", error=str(e).splitlines()[0])
        else:
            unintended = reads.unintended()
            summary.update(result="FAIL" if unintended else "PASS",
                           intended={f"{where} ({why})": n for (where, why), n in reads.count().items() if why},
                           unintended=[f"{r.kind} in {r.where}" for r in unintended])
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if summary["result"] == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
