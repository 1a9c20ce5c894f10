"""Cost against data-set size: feature extraction and one training epoch at 1k, 10k and 100k small images.

Each size runs in a fresh process (this script with ``--child N``) on the configuration of ``examples/shapes``
with 32 px shape images, the example's tiny backbones, one epoch and an empty ``MTL_CACHE_DIR``. The child times
the phases of ``mtl run`` separately, calling the functions ``mtl_core.workflow.pipeline.execute`` calls:

* generation: ``prepare`` (writes the synthetic data set into the cache, reads and checks its table);
* extraction: ``compute_inputs`` on the cold feature cache (decode, resize, backbones, hashing, cache writes),
  after one untimed batch through the backbones, so that one-time set-up does not weigh on the small sizes;
* one epoch: ``train_and_predict`` on the first split with ``train.epochs=1`` (the validation pass and the test
  prediction included).

It prints JSON with the timings, the fused feature matrix's size and the peak RSS before extraction, after it and
after the epoch. The parent prints throughput per size, its ratio to the smallest size (target: extraction at
100k within 10 % of 1k), and peak RSS growth beside feature-matrix growth. This VM's speed drifts by 10-20 %
between minutes, so the smallest size is measured again after each other size and the ratios use the median of
those runs; each run also reports the throughput of its first and last 1,000 images, a ratio within one process.

    .venv/bin/python bench/bench_scale.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "shapes"
MARK = "SCALE_RESULT "


def overrides(n: int) -> list[str]:
    """The settings of bench_memory.py's ``mtl run``: n shape images of 32 px, one epoch, no baselines."""
    return [f"plugin_options.synthetic.n={n}", "plugin_options.synthetic.size=32", "data.image_size=32",
            "train.epochs=1", "evaluation.single_task_baselines=false"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


class _Ticks:
    """A progress bar that records when each batch ended."""

    def __init__(self, ticks: list[tuple[float, int]]) -> None:
        self.ticks = ticks

    def update(self, count: int) -> None:
        self.ticks.append((time.perf_counter(), (self.ticks[-1][1] if self.ticks else 0) + count))

    def close(self) -> None:
        pass


def _rate(ticks: list[tuple[float, int]], first: int, last: int) -> float:
    """Images per second between the batches that ended nearest ``first`` and ``last`` images (the stores between
    chunks included; the hashing of every file before the first batch is not)."""
    if len(ticks) < 2:
        return float("nan")
    t0, n0 = min(ticks, key=lambda t: abs(t[1] - max(first, 0)))
    t1, n1 = min(ticks, key=lambda t: abs(t[1] - last))
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def child(n: int, threads: int | None) -> dict[str, float]:
    """Time the phases of one run on ``n`` images in this (fresh) process."""
    import torch

    from mtl_core.accel import extraction_batch
    from mtl_core.config import load_config
    from mtl_core.features import create_fusion
    from mtl_core.train import pick_device
    from mtl_core.workflow.run import (
        RunContext,
        compute_inputs,
        effective_model,
        make_splits,
        prepare,
        train_and_predict,
    )

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    if threads:
        torch.set_num_threads(threads)
    config = load_config(EXAMPLE, overrides(n))
    start = time.perf_counter()
    prep = prepare(config, say=say)
    generation = time.perf_counter() - start
    model_cfg, image_size, _ = effective_model(config)
    fusion = create_fusion(model_cfg, image_size, config.train.seed)
    with torch.inference_mode():  # warm-up, in the shape the extraction batches will have
        fusion(torch.rand(extraction_batch(config.data.batch_size, pick_device(config.train.device)), 1,
                          image_size, image_size))
    start = time.perf_counter()
    prep.plugin.reader_id()  # a fixed cost inside compute_inputs (the plugin's version from the installed metadata)
    reader_id = time.perf_counter() - start
    rss_before = peak_rss_mb()
    ticks: list[tuple[float, int]] = []  # (time, images extracted so far), from the extraction's progress calls
    began = time.perf_counter()
    inputs = compute_inputs(prep, fusion, config, image_size, lambda **_: _Ticks(ticks))
    extraction = time.perf_counter() - began
    rss_extracted = peak_rss_mb()
    split = make_splits(prep.records, prep.plugin, config)[0]
    start = time.perf_counter()
    train_and_predict(RunContext(config, prep, model_cfg, image_size, None, fusion, inputs), prep.tasks, split)
    epoch = time.perf_counter() - start
    return {"n": n, "generation_s": generation, "extraction_s": extraction, "extraction_ips": n / extraction,
            "first_1k_ips": _rate(ticks, 0, 1000), "last_1k_ips": _rate(ticks, n - 1000, n),
            "reader_id_s": reader_id, "epoch_s": epoch, "train_cases": len(split.train),
            "epoch_ips": len(split.train) / epoch,
            "features_mb": inputs.tensor.numel() * inputs.tensor.element_size() / 2**20, "rss_before_mb": rss_before,
            "rss_extracted_mb": rss_extracted, "peak_rss_mb": peak_rss_mb()}


def measure(n: int, tmp: Path, threads: int | None) -> dict[str, float]:
    env = {**os.environ, "MTL_CACHE_DIR": str(tmp / f"cache{n}")}
    command = [sys.executable, __file__, "--child", str(n)] + (["--threads", str(threads)] if threads else [])
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"n={n}: the child process failed:\n{done.stderr[-2000:]}")
    return json.loads(next(line[len(MARK):] for line in done.stdout.splitlines() if line.startswith(MARK)))


def report(rows: list[dict[str, float]], smallest: list[dict[str, float]]) -> None:
    for r in rows:
        print(f"n={r['n']:>6}: extraction {r['extraction_ips']:8.1f} images/s ({r['extraction_s']:.1f} s; first 1,000 "
              f"images {r['first_1k_ips']:.1f}/s, last 1,000 {r['last_1k_ips']:.1f}/s) | one epoch "
              f"{r['epoch_ips']:8.1f} train images/s ({r['epoch_s']:.2f} s, {r['train_cases']} train cases) | "
              f"generation {r['generation_s']:.1f} s")
        print(f"        peak RSS {r['rss_before_mb']:.0f} MB before extraction, {r['rss_extracted_mb']:.0f} MB after, "
              f"{r['peak_rss_mb']:.0f} MB after the epoch | feature matrix {r['features_mb']:.1f} MB")
    base = dict(smallest[0], extraction_ips=statistics.median(r["extraction_ips"] for r in smallest))
    rates = ", ".join(f"{r['extraction_ips']:.1f}" for r in smallest)
    print(f"n={base['n']} measured {len(smallest)} times (before, between and after the others: {rates} images/s); "
          f"the ratios use their median")
    for r in rows:
        if r["n"] == base["n"]:
            continue
        extraction = r["extraction_ips"] / base["extraction_ips"]
        print(f"n={r['n']} vs n={base['n']}: extraction throughput ratio {extraction:.3f} (target >= 0.9; within the "
              f"run, last 1,000 images vs first 1,000: {r['last_1k_ips'] / r['first_1k_ips']:.3f}), "
              f"epoch throughput ratio {r['epoch_ips'] / base['epoch_ips']:.3f}, peak RSS grew "
              f"{r['peak_rss_mb'] - base['peak_rss_mb']:.1f} MB, the feature matrix "
              f"{r['features_mb'] - base['features_mb']:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of images")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(MARK + json.dumps(child(args.child, args.threads)))
        return
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    order = [sizes[0]] + [x for n in sizes[1:] for x in (n, sizes[0])]  # the smallest again after each other size
    with tempfile.TemporaryDirectory(prefix="mtl-bench-scale-") as tmp:
        done = [measure(n, Path(tmp) / str(i), args.threads) for i, n in enumerate(order)]
    print(f"examples/shapes, {' '.join('--set ' + o for o in overrides(0)[1:])}; one fresh process and an empty "
          f"MTL_CACHE_DIR per size; throughput in images/s")
    report([done[0]] + done[1::2], done[0::2])


if __name__ == "__main__":
    main()
