"""Image decoding and resizing against feature extraction, per number of DataLoader workers.

Writes N PNG images (smooth blobs plus noise, 16- or 8-bit grayscale) with Pillow, then, in this process, times
one pass of ``DataLoader(ImageDataset(paths, read_image, size), num_workers=w)`` for each ``w``, and the extraction
of ``BackboneFusion`` (random weights, ``torch.inference_mode``) on already decoded batches. The files are in the
page cache since they were just written, so no warm-up pass is made. A pass includes starting its workers; the
start-up of ``w`` workers is also timed alone (a loader over trivial items) and left out of the per-worker rate that
the ``--gpu-rate`` extrapolation uses.

    python bench/bench_decode.py --images 64 --png-size 2048 --bit-depth 16 --workers 0,1,2 --gpu-rate 3080

Prints decoded images/s per worker count and its ratio to extraction images/s; with ``--gpu-rate``, how many
workers would keep up with a GPU consuming that many images/s (an extrapolation from one worker's rate).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mtl_core.data import ImageDataset, InputCache, load_image_tensor
from mtl_core.features import BackboneFusion
from mtl_core.io import read_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="number of PNG images")
    parser.add_argument("--png-size", type=int, default=2048, help="side of the written PNGs in pixels")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=16, help="bits per pixel of the PNGs")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--backbones", default="resnet18", help="comma-separated backbone names")
    parser.add_argument("--size", type=int, default=224, help="resolution images are resized to (and extracted at)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (loader and extraction)")
    parser.add_argument("--extract-batches", type=int, default=2, help="timed extraction batches after a warm-up")
    parser.add_argument("--gpu-rate", type=float, default=None, help="images/s one GPU consumes, e.g. 3080")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    return parser.parse_args(argv)


def write_images(folder: Path, n: int, size: int, bits: int) -> list[Path]:
    """Smooth random blobs plus noise, so that PNG compression and decoding cost about what a radiograph's do."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    top = 2**bits - 1
    paths = []
    for i in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        blob = 0.8 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.1 + r) ** 2)
        image = np.clip(blob + 0.1 * rng.random((size, size), dtype=np.float32), 0, 1) * top
        pixels = image.astype(np.uint16 if bits == 16 else np.uint8)  # uint16 -> Pillow mode "I;16"
        path = folder / f"img_{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def time_single(paths: list[Path], size: int) -> tuple[float, float]:
    """Seconds per image of ``read_image`` alone, and of decoding plus resizing to ``size`` (one process)."""
    sample = paths[: min(len(paths), 8)]
    start = time.perf_counter()
    for path in sample:
        read_image(path)
    decode = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for path in sample:
        load_image_tensor(path, read_image, size)
    return decode, (time.perf_counter() - start) / len(sample)


def time_loader(paths: list[Path], size: int, batch: int, workers: int) -> float:
    """Seconds of one pass over a DataLoader with ``workers`` workers (their start-up included)."""
    loader = torch.utils.data.DataLoader(ImageDataset(paths, read_image, size), batch_size=batch, num_workers=workers)
    start = time.perf_counter()
    for _index, _images in loader:  # items are (index, image)
        pass
    return time.perf_counter() - start


def time_input_cache(paths: list[Path], size: int, batch: int, root: Path) -> float:
    """Seconds of a pass served by the persistent input cache (``data.cache_inputs``), after a pass that fills it."""
    cache = InputCache(root, "bench")
    for _ in torch.utils.data.DataLoader(ImageDataset(paths, read_image, size, cache), batch_size=batch):
        pass
    loader = torch.utils.data.DataLoader(ImageDataset(paths, read_image, size, cache), batch_size=batch)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def time_startup(workers: int) -> float:
    """Seconds to start ``workers`` workers and get one trivial item from each."""
    start = time.perf_counter()
    for _ in torch.utils.data.DataLoader(range(workers), batch_size=1, num_workers=workers):
        pass
    return time.perf_counter() - start if workers else 0.0


def time_extraction(fusion: BackboneFusion, batch: torch.Tensor, batches: int) -> float:
    """Images/s of the fused backbones on an already decoded batch (B, 1, size, size), after one warm-up batch."""
    with torch.inference_mode():
        fusion(batch)
        start = time.perf_counter()
        for _ in range(batches):
            fusion(batch)
        return len(batch) * batches / (time.perf_counter() - start)


def report_gpu(rate: float, n: int, seconds: dict[int, float], startup: dict[int, float]) -> None:
    """How many workers a GPU consuming ``rate`` images/s would need, from one worker's measured rate."""
    base = 1 if 1 in seconds else min(seconds)
    per_worker = n / max(seconds[base] - startup[base], 1e-9) / max(base, 1)
    source = {0: "the main process (no 1-worker pass was measured)", 1: "1 worker"}.get(
        base, f"{base} workers divided by {base}")
    print(f"EXTRAPOLATION: a GPU consuming {rate:.0f} images/s needs about {math.ceil(rate / per_worker)} workers "
          f"= ceil({rate:.0f} / {per_worker:.1f}), the decode rate of {source}, worker start-up left out; it assumes "
          f"that workers scale linearly with free cores, which this machine ({os.cpu_count()} cores) cannot show")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    work = Path(tempfile.mkdtemp(prefix="mtl-bench-decode-"))
    try:
        start = time.perf_counter()
        paths = write_images(work, args.images, args.png_size, args.bit_depth)
        written = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
        one, one_resized = time_single(paths, args.size)
        seconds = {w: time_loader(paths, args.size, args.batch, w) for w in workers}
        startup = {w: time_startup(w) for w in workers}
        cached = time_input_cache(paths, args.size, args.batch, work / "input-cache")
        decoded = torch.stack([load_image_tensor(p, read_image, args.size) for p in paths[: args.batch]])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fusion = BackboneFusion(names, weights="random", image_size=args.size)
    extract = time_extraction(fusion, decoded, args.extract_batches)
    what = f"{args.png_size}x{args.png_size} {args.bit_depth}-bit PNG"
    print(f"{args.images} PNGs {what} ({megabytes:.2f} MB each, written in {written:.1f} s, read from the page "
          f"cache) | resized to {args.size} | batch {args.batch} | threads {torch.get_num_threads()} | "
          f"cores {os.cpu_count()} | torch {torch.__version__} | {platform.processor() or platform.machine()}")
    print(f"decode of one {what}: {one * 1000:.1f} ms")
    print(f"decode + resize to {args.size} of one {what}: {one_resized * 1000:.1f} ms")
    print(f"extraction ({','.join(names)} at {args.size}, {args.extract_batches} batches after a warm-up): "
          f"{extract:.1f} images/s")
    print(f"{'workers':>8} {'decode images/s':>16} {'decode/extraction':>18} {'worker start-up s':>18}")
    for w, spent in seconds.items():
        rate = args.images / spent  # start-up included
        print(f"{w:>8} {rate:>16.1f} {rate / extract:>18.2f} {startup[w]:>18.2f}")
    rate = args.images / cached
    print(f"input cache (data.cache_inputs), 0 workers: {rate:.1f} images/s, {rate / extract:.2f} x extraction, "
          f"{cached / seconds[min(seconds)]:.3f} of the decoding pass's time (files hashed, tensors read back)")
    if args.gpu_rate:
        report_gpu(args.gpu_rate, args.images, seconds, startup)


if __name__ == "__main__":
    main()
