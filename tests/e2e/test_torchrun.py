"""``torchrun`` with 2 CPU processes (gloo) on a small problem: docs/distributed.md.

A rank killed mid-training is a clean failure within seconds; the run resumed from rank 0's checkpoint, 2 processes
each with half of every global batch of 16, ends as one process with batches of 16: losses and metrics within a
relative 1e-3, predictions within 1e-3 (measured: 1e-5, and 1e-4 from the CSV's rounding; only the order of
floating-point sums differs, which Adam amplifies at larger learning rates: docs/distributed.md). With frozen
backbones each process extracts its shard into the shared cache. Kept small: a tiny EfficientNet with GroupNorm
(no batch statistics that would differ between a batch and its halves), 32 px, 64 images, 5 epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")

SHAPES = REPO / "examples" / "shapes"
SMALL = ["plugin_options.synthetic.n=64", "plugin_options.synthetic.size=32", "data.image_size=32", "fallback=null",
         "evaluation.saliency_images=0", "train.batch_size=16"]
FINE_TUNE = SMALL + ["model.backbones=[test_efficientnet_gn]", "model.pooling=avg", "model.frozen=false",
                     "model.trunk.dropout=0", "train.epochs=5", "train.patience=5", "train.lr=0.001"]
# pcgrad: rank 0 trains alone on the cached features, so a gradient-level method works inside the process group
FROZEN = SMALL + ["model.backbones=[test_resnet]", "train.epochs=3", "loss.strategy=pcgrad"]


def _sets(overrides: list[str]) -> list[str]:
    return [item for value in overrides for item in ("--set", value)]


def _torchrun(out: Path, overrides: list[str], env: dict[str, str], *extra: str) -> subprocess.Popen:
    """``python -m torch.distributed.run --nproc_per_node 2 -m mtl_core.cli run ...`` (what ``torchrun`` runs)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mtl_core.cli", "run", str(SHAPES), "--output", str(out), *_sets(overrides), *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env, "OMP_NUM_THREADS": "1", "MTL_DIST_TIMEOUT": "30"})


def _finish(proc: subprocess.Popen, timeout: int = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _history(out: Path) -> dict:
    return json.loads((out / "history.json").read_text())


def _same_run(a: Path, b: Path) -> None:
    """Two run folders agree: every epoch's losses and every metric (relative 1e-3), every prediction (1e-3)."""
    ha, hb = _history(a), _history(b)
    assert len(ha["train"]) == len(hb["train"]) and ha["best_epoch"] == hb["best_epoch"]
    for part in ("train", "val"):
        for ea, eb in zip(ha[part], hb[part], strict=True):
            assert ea.keys() == eb.keys()
            for key in ea:
                assert eb[key] == pytest.approx(ea[key], rel=1e-3, abs=1e-6), (part, key)
    ma, mb = (json.loads((run / "metrics.json").read_text())["tasks"] for run in (a, b))
    for task, entry in ma.items():
        for metric, value in entry["metrics"].items():
            assert mb[task]["metrics"][metric] == pytest.approx(value, rel=1e-3, abs=1e-3, nan_ok=True), metric
    pa, pb = pd.read_csv(a / "predictions.csv"), pd.read_csv(b / "predictions.csv")
    assert list(pa["id"]) == list(pb["id"])
    numeric = pa.select_dtypes("number").columns
    np.testing.assert_allclose(pb[numeric].to_numpy(float), pa[numeric].to_numpy(float), atol=1e-3, rtol=0)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker of ``rank`` (its children are the workers)."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        for pid in children:
            if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return int(pid)
    except OSError:
        return None
    return None


def _kill_rank_one_after_first_epoch(out: Path, cache_env: dict[str, str]) -> str:
    """Start the 2-process run, SIGKILL rank 1 once rank 0 has checkpointed an epoch; torchrun's stderr."""
    proc = _torchrun(out, FINE_TUNE, cache_env)
    deadline = time.monotonic() + 180
    while not list(out.glob("checkpoints/*.safetensors")):  # rank 0 saved its first epoch
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    code, err = _finish(proc, timeout=60)
    assert code != 0 and time.monotonic() - killed < 45, err[-3000:]  # rank 0 ends at once: no hang
    assert "Signal 9 (SIGKILL)" in err, err[-3000:]  # torchrun names the dead rank
    assert not (out / "metrics.json").exists()
    return err


def test_two_processes_killed_resumed_end_as_one_process_with_the_same_global_batch(tmp_path, cache_env,
                                                                                    monkeypatch):
    two = tmp_path / "two"
    err = _kill_rank_one_after_first_epoch(two, cache_env)
    # rank 0, when it noticed before torchrun stopped it, said one line: no traceback of the engine's code
    assert "mtl_core/" not in err.replace("-m mtl_core.cli", "")
    code, err = _finish(_torchrun(two, FINE_TUNE, cache_env, "--resume"))
    assert code == 0, err[-3000:]
    # one run folder, written once by rank 0, its checkpoints dropped at the end
    assert (two / "metrics.json").is_file() and (two / "report.md").is_file()
    assert not list(two.glob("checkpoints/*.safetensors"))

    from mtl_core.config import load_config
    from mtl_core.workflow import execute

    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    one = tmp_path / "one"
    execute(load_config(SHAPES, FINE_TUNE), output=one, say=lambda message: None)
    assert _history(one)["val"][-1]["total"] < _history(one)["val"][0]["total"]  # it did train
    _same_run(one, two)


def test_frozen_backbones_each_process_extracts_its_shard(tmp_path):
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    code, err = _finish(_torchrun(tmp_path / "frozen", FROZEN, env))
    assert code == 0, err[-3000:]
    summary = json.loads((tmp_path / "frozen" / "metrics.json").read_text())["run"]
    # rank 0 extracted its 32 of the 64 images and read the other 32 that rank 1 had stored in the shared cache
    assert summary["feature_cache"] == {"cache_hits": 32, "cache_misses": 32, "processes": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "frozen"]  # one run folder
