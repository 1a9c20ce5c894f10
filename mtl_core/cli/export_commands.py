"""``mtl export`` and ``mtl explain``, and ``mtl predict``'s engine options. Each command imports what it needs
when it runs, so ``mtl --help`` loads no torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``explain`` subcommands to ``mtl``'s parser."""
    p = sub.add_parser("export", help="write a finished run as one ONNX graph (image -> every task's output) with "
                                      "its task schema in the metadata")
    p.add_argument("run_dir", help="run folder of a finished `mtl run`")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="the file format (onnx)")
    p.add_argument("--output", type=Path, help="file to write (default: RUN_DIR/model.onnx)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("explain", help="saliency overlays (Grad-CAM; a point task's heatmap) of a run for images")
    p.add_argument("run_dir", help="run folder of a finished `mtl run`")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--task", required=True, help="the task whose decision is shown")
    p.add_argument("--class", dest="target_class", metavar="C", help="class to explain, by name or index (default: "
                                                                      "each image's predicted class)")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcampp"],
                   help="Grad-CAM or Grad-CAM++ on each backbone's last feature map, fused (default gradcam)")
    p.add_argument("--output", type=Path, required=True, help="folder for the overlay PNGs (IMAGE_STEM.TASK.png)")
    p.set_defaults(func=cmd_explain)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``mtl predict --engine torch|onnx [--onnx FILE]``."""
    p.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                   help="torch: the run's PyTorch model (default); onnx: its exported graph with onnxruntime "
                        "(`mtl export` first)")
    p.add_argument("--onnx", type=Path, metavar="FILE", help="the exported graph (default: RUN_DIR/model.onnx)")


def cmd_export(args: argparse.Namespace) -> int:
    """Export a finished run as one ONNX graph."""
    from ..workflow.deploy import export_run  # lazy: `mtl --help` loads no torch

    path = export_run(Path(args.run_dir), args.output, args.format)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Write a saliency overlay per image for one task."""
    from ..workflow.explaining import explain_images  # lazy: `mtl --help` loads no torch

    written = explain_images(Path(args.run_dir), [Path(p) for p in args.images], args.task, args.output,
                             args.target_class, args.method)
    for item in written:
        print(f"{item.image}\t{item.task}\t{item.target}\t{item.method}\t{item.file}")
    print(f"wrote {len(written)} overlay(s) to {args.output}", file=sys.stderr)
    return 0
