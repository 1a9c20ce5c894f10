"""The README's "Use as a library" block runs exactly as written, and what it prints holds up: every task beats
its trivial baseline by a wide margin on the held-out part, over exactly the labelled cases the block's comments
describe; it early-stops on a validation part apart from the test part, and the run folder it saves is read by
`mtl predict`, which gives what the model in memory gives."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _literal(printed: str) -> dict:
    """A printed metrics dict; an undefined metric prints as nan (sensitivity without a validation part)."""
    return ast.literal_eval(re.sub(r"\bnan\b", "None", printed))


def _run_library_block() -> tuple[dict, dict]:
    block = re.search(r"## Use as a library\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no 'Use as a library' python block"
    printed, namespace = io.StringIO(), {"__name__": "readme"}
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), str(README), "exec"), namespace)
    results = {}
    for line in printed.getvalue().splitlines():  # "<task> <n> <metrics dict> baseline: <baseline dict>"
        if " baseline: " not in line:
            continue  # the predictions of the saved run, printed last
        head, baseline = line.split(" baseline: ")
        name, n, metrics = head.split(" ", 2)
        results[name] = {"n": int(n), "metrics": _literal(metrics), "baseline": _literal(baseline)}
    namespace["printed"] = printed.getvalue()
    return results, namespace


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The block run once in a fresh folder (it writes its run folder under ./runs)."""
    with contextlib.chdir(tmp_path_factory.mktemp("readme")):
        results, ns = _run_library_block()
        ns["cwd"] = Path.cwd()
    return results, ns


def test_library_block_runs_and_beats_baselines(readme):
    results, ns = readme
    assert list(results) == ["kind", "size"]
    test, targets = ns["test"], ns["targets"]
    # n counts the held-out cases with a label: the ~10 % of missing kinds and every size of a plain image are out
    assert results["kind"]["n"] == int(np.sum(~np.isnan(targets["kind"][test])))
    assert results["size"]["n"] == int(np.sum(~np.isnan(targets["size"][test])))
    assert results["size"]["n"] == int(np.sum(ns["kind"][test] == 1)) > 5
    kind, size = results["kind"], results["size"]
    # a bright square against none is easy: the model is nearly perfect where the majority guess is at chance
    assert kind["metrics"]["f1_macro"] >= 0.9 and kind["metrics"]["accuracy"] >= 0.9
    assert kind["metrics"]["f1_macro"] > kind["baseline"]["f1_macro"] + 0.3
    assert kind["baseline"]["balanced_accuracy"] == 0.5  # the baseline is the training majority, one class
    # the square's side (4 to 12 px, so about 2.2 px from the mean): under half the baseline's error, in pixels
    assert size["metrics"]["mae"] < 0.5 * size["baseline"]["mae"] and size["metrics"]["mae"] < 1.5
    assert size["baseline"]["mae"] > 1.5


def test_early_stopping_watches_a_validation_part_apart_from_the_test_part(readme):
    _, ns = readme
    train, val, test = (set(ns[k].tolist()) for k in ("train", "val", "test"))
    assert val and not (val & test) and not (val & train) and not (train & test)
    history = ns["history"]
    assert len(history.val) == len(history.train) > 0  # a validation loss every epoch: what early stopping reads
    assert 0 <= history.best_epoch < len(history.val)
    assert history.val[history.best_epoch]["total"] == min(h["total"] for h in history.val)


def test_saved_run_is_read_by_mtl_predict_as_the_model_in_memory_predicts(readme):
    _, ns = readme
    folder, files, model, tasks = ns["cwd"] / ns["folder"], ns["files"], ns["model"], ns["tasks"]
    for name in ("model.json", "model.safetensors", "metrics.json", "predictions.csv", "report.md", "report.html",
                 "history.json"):
        assert (folder / name).is_file(), name
    from mtl_core.data import load_image_tensor
    from mtl_core.io import read_image

    model.eval()
    with torch.no_grad():
        pixels = torch.stack([load_image_tensor(ns["cwd"] / f, read_image, 32) for f in files])
        expected = model(pixels)  # the in-memory model on the very pixels mtl predict reads
    probs = tasks[0].probabilities(expected["kind"])
    sizes = tasks[1].decode(expected["size"])
    done = subprocess.run([sys.executable, "-m", "mtl_core.cli", "predict", str(folder), *map(str, files),
                           "--format", "csv"], capture_output=True, text=True, cwd=ns["cwd"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(io.StringIO(done.stdout))
    assert list(frame.columns) == ["image", "kind", "kind_prob", "size"] and len(frame) == len(files)
    assert frame["kind"].tolist() == [tasks[0].classes[i] for i in probs.argmax(axis=1)]
    assert np.allclose(frame["kind_prob"], probs.max(axis=1), atol=1e-4)
    assert np.allclose(frame["size"], sizes, atol=1e-4)
    done = subprocess.run([sys.executable, "-m", "mtl_core.cli", "predict", str(folder), str(files[0]), "--format",
                           "json"], capture_output=True, text=True, cwd=ns["cwd"], timeout=300)
    row = json.loads(done.stdout)[0]
    assert row["size"]["unit"] == "px" and row["size"]["prediction"] == pytest.approx(float(sizes[0]), abs=1e-3)
    assert "kind" in ns["printed"].splitlines()[-len(files) - 1]  # the block printed the predict() frame


def test_the_default_phantom_is_the_size_the_readme_says():
    phantom = pytest.importorskip("jsrt_res_mtnet.phantom")
    claim = re.search(r"phantom \((\d+) nodule and (\d+) non-nodule\s+radiographs", README.read_text())
    assert claim, "README no longer states the phantom's size"
    table = phantom.synthesize_metadata()  # the default table `make run` renders
    assert int(table["study_id"].str.startswith("JPCLN").sum()) == int(claim.group(1))
    assert int(table["study_id"].str.startswith("JPCNN").sum()) == int(claim.group(2))
