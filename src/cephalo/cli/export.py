"""``cephalo export``: a trained checkpoint as an ONNX model.

The model takes letterboxed grey images as float32 pixel values 0..255, ``image (batch, 1, H, W)``, and returns
``heatmaps (batch, K, H / stride, W / stride)``; normalisation is inside the graph, the model facts (landmark
names, input size, stride, sigma) are in the file's metadata, and ``load_predictor("model.onnx")`` decodes the
heatmaps with the same DARK codec as for .pt checkpoints. Needs ``pip install "cephalo[onnx]"``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cephalo.checks import between, existing_file, writable_file
from cephalo.flags import Typed

SELF_CHECK_TOLERANCE = 1e-3  # max abs heatmap difference between ONNX Runtime and PyTorch, fp32


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Typed(Path, existing_file), required=True,
                   help="best.pt / last.pt written by cephalo train")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format (default onnx)")
    p.add_argument("--out", type=Typed(Path, writable_file), default=None,
                   help="output file (default: the checkpoint's name with .onnx)")
    p.add_argument("--opset", type=Typed(int, between(9, 23)), default=None,
                   help="ONNX opset version, 9-23 (default 18)")
    p.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                   help="PyTorch exporter: auto tries the TorchScript one, then the dynamo one (default auto)")
    p.add_argument("--no_check", action="store_true",
                   help="skip the self-check (ONNX Runtime against PyTorch on one random image)")
    p.set_defaults(run=run)


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def run(args) -> int:
    from cephalo.inference.export import compare_with_torch, export_checkpoint

    out = args.out or args.checkpoint.with_suffix(".onnx")
    if out.resolve() == args.checkpoint.resolve():
        raise ValueError(f"--out {out} would overwrite the checkpoint; choose another name")
    try:
        report = export_checkpoint(args.checkpoint, out, opset=args.opset, exporter=args.exporter)
    except RuntimeError as e:  # every exporter failed: the message lists why, per exporter
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = report.metadata
    size_mb = report.path.stat().st_size / 2**20
    print(f"exported {report.path} ({size_mb:.1f} MB, opset {report.opset}, {report.exporter} exporter, "
          f"{report.seconds:.1f} s; {meta['weights']} weights"
          + (f" of epoch {meta['epoch']})" if meta["epoch"] is not None else ", as trained before its local stage)"))
    for note in report.fallbacks:
        print(f"  note: {note} -> used the {report.exporter} exporter")
    for kind, values in (("input ", report.inputs), ("output", report.outputs)):
        for name, dtype, shape in values:
            print(f"  {kind} {name:<9} {dtype} {_shape(shape)}")
    print(f"  {meta['model_name']}, {len(meta['landmark_names'])} landmarks ({', '.join(meta['landmark_names'])}), "
          f"heatmap stride {meta['stride']}, sigma {meta['sigma']:g}")
    print("  input: letterboxed grey image as float32 pixel values 0..255 (normalised inside the graph)")
    if report.local is not None:
        local = report.local
        print(f"exported the local stage to {local.path} ({local.path.stat().st_size / 2**20:.1f} MB, "
              f"{local.metadata['model_name']}): patches of {local.metadata['image_size'][0]} px at "
              f"{local.metadata['mm_per_px']:g} mm/px around the rough landmarks -> one heatmap per landmark; keep "
              f"it beside {report.path.name}, which names it")
    if args.no_check:
        return 0
    worst = 0
    for part, what in ((report, "image"), (report.local, "patch batch")):
        if part is None:
            continue
        diff, peak = compare_with_torch(part)
        ok = diff <= SELF_CHECK_TOLERANCE
        print(f"self-check{' (local stage)' if part is report.local else ''}: ONNX Runtime vs PyTorch on one random "
              f"{what}: max abs heatmap difference {diff:.2e} (heatmap max {peak:.3f}) {'OK' if ok else 'TOO LARGE'}")
        if not ok:
            print(f"warning: the ONNX model differs from PyTorch by more than {SELF_CHECK_TOLERANCE:g}; try another "
                  "--opset or --exporter")
            worst = 1
    return worst
