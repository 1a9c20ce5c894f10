"""Cost of cross-validation on cached features: a single held-out split end to end against 5 folds x 3 repeats
end to end, each from an empty cache, in one process run. Prints both wall times and their ratio (target < 2).

    .venv/bin/python bench/bench_crossval.py [--set key=value ...] [--data PATH] [--single-task]

By default it runs the example's configuration (with its fallback when no pretrained weights are on the machine)
on the JSRT phantom; single-task baselines are off on both sides unless --single-task is given, so the ratio
measures the folds alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(extra: list[str], data: str | None, cache: str, out: str) -> float:
    command = [sys.executable, "-m", "mtl_core.cli", "run", str(REPO / "examples" / "jsrt_res_mtnet"),
               "--output", out, *extra] + (["--data", data] if data else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "MTL_CACHE_DIR": cache},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-task", action="store_true", help="train single-task baselines on both sides")
    args = parser.parse_args()
    sets = [x for s in args.set for x in ("--set", s)]
    sets += ["--set", f"evaluation.single_task_baselines={'true' if args.single_task else 'false'}"]
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:  # generate the phantom once, outside both timings
            data = str(Path(tmp) / "phantom")
            subprocess.run([sys.executable, "-m", "mtl_core.cli", "synthesize", "jsrt_res_mtnet", data], check=True,
                           cwd=REPO, stdout=subprocess.DEVNULL)
        single = timed_run(sets, data, str(Path(tmp) / "c1"), str(Path(tmp) / "o1"))
        folds = timed_run(sets + ["--folds", str(args.folds), "--repeats", str(args.repeats)], data,
                          str(Path(tmp) / "c2"), str(Path(tmp) / "o2"))
    print(f"single split, end to end (empty cache): {single:.1f} s")
    print(f"{args.folds} folds x {args.repeats} repeats, end to end (empty cache): {folds:.1f} s")
    print(f"ratio cross-validation / single split: {folds / single:.2f} (target < 2)")


if __name__ == "__main__":
    main()
