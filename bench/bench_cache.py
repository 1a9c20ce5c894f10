"""The feature cache: cold (empty cache folder) against warm (second call) ``FeatureCache.features``.

Writes N grayscale PNG images with Pillow, then times, in this process, the first call on an empty cache folder
(every image decoded, resized and run through the frozen backbones, then stored) and a second call with a fresh
``FeatureCache`` on the same folder (every image hashed and served from the cache). Optionally (``--e2e``) it also
times a whole ``mtl run`` of the JSRT example on the plugin's synthetic phantom in subprocesses sharing one
``MTL_CACHE_DIR``: first with an empty cache, then (``--e2e-warm-runs``, 3) with the features cached; the ratio
uses the median of the cached runs. That part is skipped, with a note, when the plugin or its phantom generator
is unavailable.

    python bench/bench_cache.py --images 64 --backbones resnet18 --image-size 224 --e2e
    python bench/bench_cache.py --images 8 --e2e --e2e-as-is     # the example as configured: cold vs warm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mtl_core.features import BackboneFusion, FeatureCache
from mtl_core.io import read_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "jsrt_res_mtnet"
MTL = [sys.executable, "-m", "mtl_core.cli"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="number of PNG images")
    parser.add_argument("--png-size", type=int, default=256, help="side of the written PNGs in pixels")
    parser.add_argument("--backbones", default="resnet18", help="comma-separated backbone names")
    parser.add_argument("--image-size", type=int, default=224, help="resolution the backbones run at")
    parser.add_argument("--batch", type=int, default=16, help="extraction batch size")
    parser.add_argument("--e2e", action="store_true", help="also time 'mtl run' cold vs warm on the phantom")
    parser.add_argument("--e2e-backbones", default="test_resnet,test_efficientnet",
                        help="backbones of the end-to-end run (set via --set model.backbones=[...])")
    parser.add_argument("--e2e-image-size", type=int, default=64)
    parser.add_argument("--e2e-phantom-size", type=int, default=64, help="side of the phantom images")
    parser.add_argument("--e2e-epochs", type=int, default=3)
    parser.add_argument("--e2e-warm-runs", type=int, default=3,
                        help="cached runs after the empty-cache one; the ratio uses their median (a noisy machine)")
    parser.add_argument("--e2e-as-is", action="store_true",
                        help="run the example exactly as configured (its backbones, or their fallback without "
                             "weights; the default 256 px phantom) instead of the small settings above")
    return parser.parse_args(argv)


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """Smooth random blobs plus noise, so that PNG decoding costs about what it costs for a radiograph."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        image = 0.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.1 + r) ** 2) + 0.1 * rng.random((size, size))
        path = folder / f"img_{i:04d}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def time_cache(args: argparse.Namespace, work: Path) -> None:
    paths = write_images(work / "images", args.images, args.png_size)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    fusion = BackboneFusion(names, weights="random", image_size=args.image_size)
    root = work / "cache"
    results = []
    for label in ("cold", "warm"):
        cache = FeatureCache(root)
        start = time.perf_counter()
        features = cache.features(fusion, paths, read_image, args.image_size, batch_size=args.batch)
        results.append((label, time.perf_counter() - start, cache.hits, cache.misses, features))
    (_, cold, *_), (_, warm, *_) = results
    print(f"FeatureCache.features: {args.images} PNGs {args.png_size}x{args.png_size} | backbones "
          f"{','.join(names)} at {args.image_size} | batch {args.batch} | threads {torch.get_num_threads()}")
    for label, seconds, hits, misses, _ in results:
        print(f"  {label}: {seconds:8.3f} s  ({args.images / seconds:8.1f} images/s, hits {hits}, misses {misses})")
    print(f"  warm features equal cold ones: {torch.equal(results[0][4], results[1][4])}")
    print(f"  ratio cold/warm: {cold / warm:.1f}x")


def _run(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, done


def time_end_to_end(args: argparse.Namespace, work: Path) -> None:
    env = {**os.environ, "MTL_CACHE_DIR": str(work / "mtl-cache")}
    phantom = work / "phantom"
    size = [] if args.e2e_as_is else ["--option", f"size={args.e2e_phantom_size}"]
    seconds, done = _run([*MTL, "synthesize", "jsrt_res_mtnet", str(phantom), *size], env)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"end-to-end: skipped, the JSRT phantom is unavailable ({reason})")
        return
    print(f"end-to-end: phantom written in {seconds:.1f} s ({len(list(phantom.rglob('*.png')))} images)")
    overrides = [] if args.e2e_as_is else [
        f"model.backbones=[{args.e2e_backbones}]", "model.weights=random", "model.trunk.hidden=64",
        f"data.image_size={args.e2e_image_size}", f"train.epochs={args.e2e_epochs}"]
    base = [*MTL, "run", str(EXAMPLE), "--data", str(phantom)] + [x for o in overrides for x in ("--set", o)]
    print(f"  mtl run examples/jsrt_res_mtnet --data PHANTOM {' '.join('--set ' + o for o in overrides)}")
    walls: dict[str, list[float]] = {"empty cache": [], "cached features": []}
    for i, label in enumerate(["empty cache"] + ["cached features"] * args.e2e_warm_runs):
        out = work / f"run-{i}"
        seconds, done = _run([*base, "--output", str(out)], env)
        if done.returncode != 0:
            print(f"  {label}: failed ({(done.stderr.strip().splitlines() or ['?'])[-1]}); end-to-end skipped")
            return
        stats = json.loads((out / "metrics.json").read_text())["run"]["feature_cache"]
        walls[label].append(seconds)
        print(f"  {label}: {seconds:7.1f} s wall (subprocess, interpreter start included), feature cache {stats}")
    cold, warm = walls["empty cache"][0], walls["cached features"]
    print(f"  ratio empty/cached: {cold / statistics.median(warm):.2f}x (cached: median of {len(warm)} runs, "
          f"{statistics.median(warm):.1f} s; best {cold / min(warm):.2f}x, worst {cold / max(warm):.2f}x)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mtl-bench-cache-"))
    try:
        (work / "images").mkdir()
        time_cache(args, work)
        if args.e2e:
            time_end_to_end(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
