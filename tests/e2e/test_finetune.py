"""Fine-tuning end to end: `mtl run examples/shapes --set model.frozen=false`, with and without augmentation,
beats every trivial baseline; a fine-tuning run killed with SIGKILL and resumed ends exactly as one left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import REPO, mtl

# The shapes example, fine-tuned, made small: 240 images at 32 px, 8 epochs, warm-up and cosine decay. One thread
# per run (two runs share the two cores), the same in every run so that the killed and resumed one adds up alike.
SHAPES = str(REPO / "examples" / "shapes")
SMALL = ["--set", "model.frozen=false", "--set", "plugin_options.synthetic.n=240", "--set",
         "plugin_options.synthetic.size=32", "--set", "data.image_size=32", "--set", "train.epochs=8", "--set",
         "train.schedule=cosine", "--set", "train.warmup_epochs=1"]
AUGMENTED = [*SMALL, "--set", "train.augment.enabled=true"]


def _env(cache_env: dict[str, str]) -> dict[str, str]:
    return cache_env | {"OMP_NUM_THREADS": "1"}


# `mtl run` that kills itself with SIGKILL at the first augmented batch after its second checkpoint (in epoch 3)
KILLED_IN_EPOCH_3 = """
import os, signal, sys
from mtl_core.data import augment
from mtl_core.train import state
save, augment_batch, saves = state.TrainingCheckpoint.save, augment.Augmenter.__call__, [0]
def counted(self, *args, **kwargs):
    save(self, *args, **kwargs)
    saves[0] += 1
def killing(self, *args, **kwargs):
    if saves[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return augment_batch(self, *args, **kwargs)
state.TrainingCheckpoint.save, augment.Augmenter.__call__ = counted, killing
from mtl_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _killed_then_resumed(out: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, ...]:
    """The augmented run killed with SIGKILL in its third epoch (two checkpoints written), then resumed."""
    args = ["run", SHAPES, "--output", str(out), *AUGMENTED]
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_EPOCH_3, *args], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300, cwd=REPO)
    return killed, mtl(*args, "--resume", env=env)


def _beats_every_baseline(folder: Path) -> None:
    tasks = json.loads((folder / "metrics.json").read_text())["tasks"]
    shape, count, size = tasks["shape"], tasks["count"], tasks["size"]
    assert shape["metrics"]["f1_macro"] > shape["baseline"]["f1_macro"] + 0.1, shape["metrics"]
    assert shape["metrics"]["balanced_accuracy"] > shape["baseline"]["balanced_accuracy"] + 0.1
    assert count["metrics"]["mae"] < 0.9 * count["baseline"]["mae"], count["metrics"]
    assert size["metrics"]["mae"] < 0.95 * size["baseline"]["mae"], size["metrics"]


def test_fine_tuning_beats_every_baseline_and_a_killed_run_resumes_exactly(cache_env, tmp_path):
    env = _env(cache_env)
    plain, augmented, resumed = tmp_path / "plain", tmp_path / "augmented", tmp_path / "resumed"
    with ThreadPoolExecutor(max_workers=2) as pool:
        alone = pool.submit(mtl, "run", SHAPES, "--output", str(augmented), *AUGMENTED, env=env)
        interrupted = pool.submit(_killed_then_resumed, resumed, env)
        without = pool.submit(mtl, "run", SHAPES, "--output", str(plain), *SMALL, env=env)
        runs = {"augmented": alone.result(), "plain": without.result()}
        killed, finished = interrupted.result()
    for name, done in [*runs.items(), ("resumed", finished)]:
        assert done.returncode == 0, (name, done.stderr[-2000:])
    assert killed.returncode == -signal.SIGKILL and "Traceback" not in killed.stderr, killed.stderr[-2000:]
    _beats_every_baseline(plain)
    _beats_every_baseline(augmented)
    history = json.loads((augmented / "history.json").read_text())
    assert len(history["train"]) == 8
    # the augmented, fine-tuned run killed and resumed: the very same weights, history, metrics and predictions
    for name in ("history.json", "metrics.json"):
        first, second = (json.loads((folder / name).read_text()) for folder in (augmented, resumed))
        if name == "metrics.json":  # wall time and cache statistics differ by nature
            first, second = ({k: v for k, v in m.items() if k != "run"} for m in (first, second))
        assert first == second, name
    for name in ("predictions.csv", "model.safetensors"):
        assert (augmented / name).read_bytes() == (resumed / name).read_bytes(), name
    # augmentation changed the training: not the plain run's weights
    assert (plain / "model.safetensors").read_bytes() != (augmented / "model.safetensors").read_bytes()
