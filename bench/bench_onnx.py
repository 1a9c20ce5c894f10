"""The two engines of ``mtl predict`` on the CPU: the run's PyTorch model against its exported ONNX graph run by
onnxruntime, with the same number of threads; and what ``mtl explain`` costs per image.

Builds a model over the given backbones (random weights: speed does not depend on them) with a classification, a
regression and (``--point``, pooling ``map``) a point task, saves it as a run folder, exports it with
``mtl export``, then times in this process, after warm-up, the median of ``--repeats`` calls of:

- the model alone on a batch (``--batch``) of images: ``model(images)`` under ``torch.inference_mode`` against
  ``session.run`` on the same array;
- ``mtl predict``'s whole path on ``--images`` PNG files (reading, resizing, one image at a time, decoding):
  ``predict_with(..., "torch")`` against ``predict_with(..., "onnx")``;
- the largest difference between the two engines' outputs;
- one Grad-CAM map per image (``mtl explain``), and the import of ``monai.visualize`` in a fresh interpreter.

    python bench/bench_onnx.py --backbones test_resnet,test_efficientnet --image-size 64
    python bench/bench_onnx.py --backbones resnet18 --image-size 224 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mtl_core import BackboneFusion, ClassificationTask, PointTask, RegressionTask, create_model, save_run
from mtl_core.export import load_onnx
from mtl_core.workflow.deploy import export_run, predict_with
from mtl_core.workflow.explaining import maps_for
from mtl_core.workflow.predict import load_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="test_resnet,test_efficientnet", help="comma-separated names")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="images per call of the model alone")
    parser.add_argument("--images", type=int, default=16, help="PNG files for the whole mtl predict path")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="threads of both engines (0: torch's default)")
    parser.add_argument("--point", action="store_true", help="pooling map and a point task")
    return parser.parse_args(argv)


def build_run(root: Path, args: argparse.Namespace) -> Path:
    """A saved run folder of an untrained model (random weights, fitted task statistics)."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tasks = [ClassificationTask("kind", classes=["a", "b", "c"]), RegressionTask("size", unit="mm")]
    tasks[0].fit(rng.integers(0, 3, 30).astype(float))
    tasks[1].fit(rng.uniform(5, 30, 30))
    pooling = {"pooling": "map", "map_size": 8, "map_levels": 1} if args.point else {}
    if args.point:
        tasks.append(PointTask("spot", frame=(args.image_size, args.image_size), unit="px"))
        tasks[-1].fit(rng.uniform(4, args.image_size - 4, (30, 2)))
    fusion = BackboneFusion(args.backbones.split(","), weights="random", image_size=args.image_size, **pooling)
    model = create_model(fusion, tasks, {"hidden": 64, "depth": 1}).eval()
    return save_run(root / "run", model, tasks)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    root = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    folder = build_run(root, args)
    start = time.perf_counter()
    export_run(folder)
    export_s = time.perf_counter() - start
    run, graph = load_run(folder), load_onnx(folder / "model.onnx", threads=threads)
    batch = torch.rand(args.batch, 1, args.image_size, args.image_size)
    array = batch.numpy()

    def torch_call():
        with torch.inference_mode():
            return run.model(batch)

    torch_s = median_time(torch_call, args.repeats)
    onnx_s = median_time(lambda: graph.run(array), args.repeats)
    rng = np.random.default_rng(1)
    files = []
    for i in range(args.images):
        files.append(root / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size), dtype=np.uint8)).save(files[-1])
    path_torch = median_time(lambda: predict_with(folder, files, "torch"), max(1, args.repeats // 2))
    path_onnx = median_time(lambda: predict_with(folder, files, "onnx"), max(1, args.repeats // 2))
    a, b = predict_with(folder, files, "torch").frame, predict_with(folder, files, "onnx").frame
    numeric = [c for c in a.columns if c != "image" and a[c].dtype.kind in "fi"]
    gaps = {c: float(np.abs(a[c] - b[c]).max()) for c in numeric}
    same_classes = bool((a["kind"] == b["kind"]).all())
    maps_for(run, files[0], "kind")  # warm-up: imports monai
    start = time.perf_counter()
    for f in files[:4]:
        maps_for(run, f, "kind")
    cam_s = (time.perf_counter() - start) / 4
    monai_s = _import_time("import torch, timm, torchvision.models", "import monai.visualize")
    print(f"backbones {args.backbones} at {args.image_size} px, {threads} thread(s), median of {args.repeats}")
    print(f"export: {export_s:.2f} s, {(folder / 'model.onnx').stat().st_size / 1e6:.1f} MB")
    print(f"model alone, batch {args.batch}: torch {1e3 * torch_s / args.batch:.2f} ms/image, onnxruntime "
          f"{1e3 * onnx_s / args.batch:.2f} ms/image; torch / onnxruntime = {torch_s / onnx_s:.2f}")
    print(f"mtl predict path, {args.images} PNG files one at a time: torch {1e3 * path_torch / args.images:.2f} "
          f"ms/image, onnx {1e3 * path_onnx / args.images:.2f} ms/image; torch / onnx = {path_torch / path_onnx:.2f}")
    print(f"largest |torch - onnx|: {', '.join(f'{c} {v:.1e}' for c, v in gaps.items())}; same classes: {same_classes}")
    print(f"Grad-CAM (mtl explain): {1e3 * cam_s:.0f} ms/image; importing monai.visualize: {monai_s:.2f} s")


def _import_time(before: str, what: str) -> float:
    """Seconds that ``what`` takes to import in a fresh interpreter after ``before``."""
    code = f"{before}\nimport time\nt = time.perf_counter()\n{what}\nprint(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
