"""Interrupted runs: a real `mtl run` killed with SIGKILL during feature extraction, in the middle of an epoch and
while writing a checkpoint, then stopped with Ctrl-C, and resumed each time, ends with exactly the metrics,
history and predictions of the same run left alone."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from mtl_core.train.checkpoint import checkpoint_file, load_checkpoint

from .conftest import EXAMPLE, FAST, error_lines, results_in

SETTINGS = [*FAST, "--set", "train.epochs=4", "--set", "train.patience=8"]


@pytest.fixture(scope="module")
def cold_cache(tmp_path_factory) -> dict[str, str]:
    """A cache of its own, empty at first, so that the first run has features to extract."""
    return {"MTL_CACHE_DIR": str(tmp_path_factory.mktemp("resume-cache")), "MTL_WEIGHTS_DIR": ""}


def _epochs_done(out) -> int:
    folder = out / "checkpoints"
    names = {p.name.strip(".").removesuffix(".old") for p in [*folder.glob("*.safetensors"), *folder.glob("*.old")]}
    (name,) = {n for n in names if not n.endswith(".best.safetensors")}  # one training; a save killed between its
    return load_checkpoint(checkpoint_file(out / "checkpoints" / name))["epoch"]  # renames leaves it aside


def _killed(done: subprocess.CompletedProcess) -> bool:
    return done.returncode == -signal.SIGKILL and "Traceback" not in done.stderr


def _same_results(a, b) -> None:
    for name in ("metrics.json", "history.json"):
        first, second = json.loads((a / name).read_text()), json.loads((b / name).read_text())
        if name == "metrics.json":  # wall time and cache statistics differ by nature
            first, second = ({k: v for k, v in m.items() if k != "run"} for m in (first, second))
        assert first == second, name
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_killed_and_resumed_run_ends_exactly_as_if_left_alone(phantom, cold_cache, tmp_path, mtl):
    out, reference = tmp_path / "run", tmp_path / "reference"
    run = ["run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *SETTINGS]

    done = mtl(*run, env=cold_cache, fault="kill-extract:5")  # SIGKILL during feature extraction
    assert _killed(done) and results_in(out) == [] and not list((out / "checkpoints").glob("*.safetensors"))

    done = mtl(*run, "--resume", env=cold_cache, fault="kill-batch:2:2")  # SIGKILL in the middle of epoch 2
    assert _killed(done) and _epochs_done(out) == 1
    # The same run left alone, beside the rest (the cache is warm now, as it is for every resumed run).
    pool = ThreadPoolExecutor(max_workers=1)
    alone = pool.submit(mtl, *run[:5], str(reference), *SETTINGS, env=cold_cache)

    done = mtl(*run, "--resume", env=cold_cache, fault="kill-save:2")  # SIGKILL while writing epoch 3's checkpoint
    assert _killed(done) and _epochs_done(out) == 2
    assert list((out / "checkpoints").glob(".*.tmp")), "the torn temporary file is left behind"

    done = mtl(*run, "--resume", env=cold_cache, fault="ctrl-c:2:1")  # Ctrl-C in epoch 4
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _epochs_done(out) == 3 and results_in(out) == []
    hint = [line for line in done.stderr.splitlines() if line.startswith("interrupted: resume with `")]
    assert len(hint) == 1 and done.stderr.rstrip().endswith(hint[0]), done.stderr[-2000:]
    command = shlex.split(hint[0].split("`")[1])
    assert command[:2] == ["mtl", "run"] and "--resume" in command

    done = mtl(*command[1:], env=cold_cache)  # the command it printed finishes the run
    assert done.returncode == 0 and not error_lines(done.stderr), done.stderr[-2000:]
    alone = alone.result()
    pool.shutdown()
    assert alone.returncode == 0, alone.stderr[-2000:]
    _same_results(out, reference)
    assert not list((out / "checkpoints").glob("*.safetensors")) and not list((out / "checkpoints").glob(".*"))

