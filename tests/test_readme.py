"""The README's "Use as a library" block runs exactly as written, and what it prints holds up: every task beats
its trivial baseline by a wide margin on the held-out part, over exactly the labelled cases the block's comments
describe."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _run_library_block() -> tuple[dict, dict]:
    block = re.search(r"## Use as a library\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no 'Use as a library' python block"
    printed, namespace = io.StringIO(), {"__name__": "readme"}
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), str(README), "exec"), namespace)
    results = {}
    for line in printed.getvalue().splitlines():  # "<task> <n> <metrics dict> baseline: <baseline dict>"
        head, baseline = line.split(" baseline: ")
        name, n, metrics = head.split(" ", 2)
        results[name] = {"n": int(n), "metrics": ast.literal_eval(metrics), "baseline": ast.literal_eval(baseline)}
    return results, namespace


def test_library_block_runs_and_beats_baselines():
    results, ns = _run_library_block()
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


def test_the_default_phantom_is_the_size_the_readme_says():
    phantom = pytest.importorskip("jsrt_res_mtnet.phantom")
    claim = re.search(r"phantom \((\d+) nodule and (\d+) non-nodule\s+radiographs", README.read_text())
    assert claim, "README no longer states the phantom's size"
    table = phantom.synthesize_metadata()  # the default table `make run` renders
    assert int(table["study_id"].str.startswith("JPCLN").sum()) == int(claim.group(1))
    assert int(table["study_id"].str.startswith("JPCNN").sum()) == int(claim.group(2))
