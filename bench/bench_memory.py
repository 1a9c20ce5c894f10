"""Peak memory against data-set size: extraction and one training epoch on N small generated images.

Each size runs `mtl run examples/shapes` in a fresh process (32 px shape images, the example's tiny backbones, one
epoch, no single-task baselines) and reports that process's peak RSS beside the size of its fused feature matrix.
Peak RSS should grow by about the feature matrix, not by the images.

    .venv/bin/python bench/bench_memory.py [--sizes 2000,20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = (
    "import resource, sys\n"
    "from mtl_core.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def measure(n: int, tmp: Path) -> dict[str, float]:
    out = tmp / f"run{n}"
    args = ["run", str(REPO / "examples" / "shapes"), "--output", str(out),
            "--set", f"plugin_options.synthetic.n={n}", "--set", "plugin_options.synthetic.size=32",
            "--set", "data.image_size=32", "--set", "train.epochs=1", "--set", "evaluation.single_task_baselines=false"]
    env = {**os.environ, "MTL_CACHE_DIR": str(tmp / f"cache{n}")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - start
    peak_kb = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB")))
    model = json.loads((out / "model.json").read_text())
    width = sum(b["num_features"] for b in model["backbones"])
    return {"n": n, "peak_rss_mb": peak_kb / 1024, "features_mb": n * width * 4 / 2**20, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp)) for n in sizes]
    for r in rows:
        print(f"n={r['n']:>6}: peak RSS {r['peak_rss_mb']:7.1f} MB, fused feature matrix {r['features_mb']:6.1f} MB, "
              f"wall {r['wall_s']:.1f} s (generation, extraction, one epoch)")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        growth, matrix = b["peak_rss_mb"] - a["peak_rss_mb"], b["features_mb"] - a["features_mb"]
        print(f"peak RSS grew {growth:.1f} MB from n={a['n']} to n={b['n']}; the feature matrix grew {matrix:.1f} MB")


if __name__ == "__main__":
    main()
