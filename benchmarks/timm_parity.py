"""Our backbones against timm's with the same weights: every registered model's feature maps, float64, one input.

timm's model (random init, ImageNet classifier layout, RGB) is saved as a state dict and loaded into ours through
``cephalo.models.pretrained.load_pretrained`` (the same path as ``--pretrained``, which sums the RGB stem over its
input channels); a grey image then goes to ours as one channel and to timm's as R = G = B. The four feature maps
(strides 4, 8, 16, 32: the last module of ``stage4`` in HRNet, of ``layer1..4`` in ResNet) must agree to float64
rounding, in eval mode (running statistics) and in train mode (batch statistics), and every backbone tensor must load.
Needs timm (not a cephalo dependency): the GPU machine has it; here it is imported lazily.

    PYTHONPATH=src python benchmarks/timm_parity.py --device cuda --image_size 256 --out gpu-results/timm_parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from cephalo.models import create_model
from cephalo.models.pretrained import load_pretrained
from cephalo.models.registry import get_model_spec, model_names

TOLERANCE = 1e-7  # rel. L2 per feature map, in float64: a wrong layer is off by O(1), rounding by 1e-14..1e-10


def timm_features(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's four stride-4..32 feature maps, read with forward hooks (no reliance on features_only's names)."""
    found: list[torch.Tensor] = []
    # HRNet: the last module of stage 4 (its four branch outputs), ResNet: each layer's last block
    layers = [model.stage4[-1]] if hasattr(model, "stage4") else [getattr(model, f"layer{i}")[-1] for i in range(1, 5)]
    hooks = [layer.register_forward_hook(
        lambda _m, _i, out: found.extend(out if isinstance(out, (list, tuple)) else [out])) for layer in layers]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return found


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """In the maps' own dtype (float64 here): a cast to float32 would round away the differences being measured."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def compare(name: str, timm, device: torch.device, size: int, folder: Path) -> dict:
    spec = get_model_spec(name)
    reference = timm.create_model(spec.timm_name, pretrained=False).to(device, torch.float64)
    weights = folder / f"{spec.timm_name}.pth"
    torch.save(reference.state_dict(), weights)
    ours = create_model(name, num_landmarks=19).to(device, torch.float64)
    report = load_pretrained(ours, weights, verbose=False)
    backbone = ours.backbone
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(2, 1, size, size, generator=g, dtype=torch.float64).to(device)
    row = {"model": name, "timm": spec.timm_name, "loaded": len(report.loaded),
           "left_at_init": report.left_at_init, "shape_mismatch": {k: [list(a), list(b)] for k, (a, b)
                                                                   in report.shape_mismatch.items()}}
    for mode in ("eval", "train"):
        reference.train(mode == "train")
        backbone.train(mode == "train")
        with torch.no_grad():
            theirs = timm_features(reference, grey.expand(-1, 3, -1, -1))
            mine = backbone(grey)
        if len(theirs) != len(mine) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
            row[mode] = {"shapes": [[list(a.shape) for a in mine], [list(b.shape) for b in theirs]]}
            row["result"] = "FAIL"
            continue
        row[mode] = [rel_l2(a, b) for a, b in zip(mine, theirs)]
    ok = (not row["left_at_init"] and not row["shape_mismatch"] and "result" not in row
          and all(e <= TOLERANCE for mode in ("eval", "train") for e in row[mode]))
    row["result"] = "PASS" if ok else "FAIL"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--models", default=",".join(model_names()), help="comma-separated cephalo model names")
    parser.add_argument("--out", type=Path, help="JSON summary")
    args = parser.parse_args()
    try:
        import timm  # optional: only this check needs it
    except Exception as e:  # ImportError, or torchvision failing to load against this torch build
        print(f"timm is not importable here ({type(e).__name__}: {e}); run this where timm works "
              "(pip install timm)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    names = list(dict.fromkeys(get_model_spec(n).name for n in args.models.split(",") if n))  # aliases once
    summary = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "timm": timm.__version__, "image_size": args.image_size,
               "tolerance_rel_l2": TOLERANCE, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            try:
                row = compare(name, timm, device, args.image_size, Path(folder))
            except Exception as e:  # one model's failure is a result, the others still run
                row = {"model": name, "result": "FAIL", "error": f"{type(e).__name__}: {e}"}
            summary["models"].append(row)
            worst = max((e for m in ("eval", "train") for e in row.get(m, []) if isinstance(e, float)), default=None)
            print(f"{name:16s} {row['result']}  worst rel. L2 {worst}  {row.get('error', '')}", flush=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if all(r["result"] == "PASS" for r in summary["models"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
