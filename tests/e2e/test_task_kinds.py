"""Task kinds registered outside the engine work end to end without engine changes: the plugin of
tests/e2e/kind_fixture.py (kinds ``count`` and ``shift``), installed through an entry point of a throwaway
distribution, trains and is reported by `mtl run`, rebuilt by `mtl predict`, and passes `mtl plugins check`."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from .conftest import REPO, mtl

CONFIG = """\
plugin: kinds_fixture
data: {image_size: 32}
model:
  backbones: [test_resnet]
  weights: random
  trunk: {hidden: 32, depth: 1, dropout: 0.0}
evaluation: {single_task_baselines: true}
train: {epochs: 8, batch_size: 16, lr: 3.0e-3, patience: 8}
"""
ENTRIES = ["blobs", "offset", "offset_dx", "offset_dy", "brightness"]  # each task, then its components


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, cache_env) -> dict[str, str]:
    """$PYTHONPATH with a distribution whose entry point ``kinds_fixture`` names the fixture plugin: found by
    importlib.metadata like any installed plugin, so `mtl predict` loads it (it never imports plugin files)."""
    site = tmp_path_factory.mktemp("site")
    info = site / "mtl_kinds_fixture-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtl-kinds-fixture\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mtl.plugins]\nkinds_fixture = tests.e2e.kind_fixture:KindsPlugin\n")
    return {**cache_env, "PYTHONPATH": os.pathsep.join(p for p in (str(site), str(REPO),
                                                                    os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def kinds_run(tmp_path_factory, plugin_env):
    root = tmp_path_factory.mktemp("kinds")
    (root / "example").mkdir()
    (root / "example" / "config.yaml").write_text(CONFIG)
    done = mtl("run", str(root / "example"), "--output", str(root / "run"), env=plugin_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run", done


def test_metrics_hold_each_kind_its_components_and_delta_m(kinds_run):
    out, done = kinds_run
    metrics = json.loads((out / "metrics.json").read_text())
    tasks = metrics["tasks"]
    assert list(tasks) == ENTRIES
    assert tasks["blobs"]["kind"] == "count" and tasks["blobs"]["unit"] == "blobs"
    assert {"mae", "exact"} == set(tasks["blobs"]["metrics"]) == set(tasks["blobs"]["single_task"])
    assert tasks["offset"]["kind"] == "shift" and set(tasks["offset"]["metrics"]) == {"distance"}
    for axis in ("offset_dx", "offset_dy"):
        entry = tasks[axis]
        assert entry["kind"] == "regression" and entry["part_of"] == "offset" and entry["unit"] == "px"
        assert entry["n"] == tasks["offset"]["n"] > 0 and "mae" in entry["metrics"] and "single_task" not in entry
    assert isinstance(metrics["delta_m"], float)  # components without single-task values are left out
    counts = metrics["label_counts"]["offset"]
    assert 0 < sum(counts.values()) < metrics["run"]["cases"]  # a case without blobs has no offset label
    crowded = metrics["strata"]["crowded"]
    assert set(crowded["yes"]) == set(ENTRIES) and crowded["yes"]["offset_dx"]["n"] > 0
    assert "count" in done.stdout and "exact" in done.stdout and "distance" in done.stdout


def test_predictions_report_and_figures_follow_each_kinds_declarations(kinds_run):
    out, _ = kinds_run
    frame = pd.read_csv(out / "predictions.csv")
    assert {"blobs_true", "blobs_pred", "offset_dx_true", "offset_dx_pred", "offset_dy_true", "offset_dy_pred",
            "brightness_true", "brightness_pred"} <= set(frame.columns)
    assert "offset_true" not in frame.columns and "blobs_prob" not in frame.columns
    assert frame["brightness_pred"].between(0.0, 1.0).all()  # the declared bounds clamp the predictions
    report = (out / "report.md").read_text()
    assert "## Count" in report and "## Shift" in report
    count_table = report.split("## Count")[1].split("##")[0]
    assert "| task | unit | n | MAE | baseline MAE | exact | baseline exact | beats baseline |" in count_table
    assert "| blobs | blobs |" in count_table
    assert "| offset | px |" in report.split("## Shift")[1].split("##")[0]
    regression = report.split("## Regression")[1].split("##")[0]
    assert "| offset_dx | px |" in regression and "| brightness |" in regression
    assert "blobs (MAE / exact)" in report and "offset_dx (MAE)" in report
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"scatter_blobs.png", "scatter_brightness.png", "scatter_offset_dx.png", "scatter_offset_dy.png"} \
        <= set(figures)
    assert not any(name.startswith("confusion_") or "offset." in name for name in figures)


def test_predict_rebuilds_the_kinds_and_matches_the_run(kinds_run, plugin_env):
    """The run's own model (one split) applied to a test image gives the values predictions.csv holds."""
    out, _ = kinds_run
    data = json.loads((out / "metrics.json").read_text())["run"]["data"]
    case = pd.read_csv(out / "predictions.csv").dropna(subset=["offset_dx_true"]).iloc[0]
    image = f"{data}/images/{case['id']}.png"
    done = mtl("predict", str(out), image, "--format", "json", env=plugin_env)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)[0]
    assert row["blobs"]["unit"] == "blobs" and row["blobs"]["prediction"] == pytest.approx(case["blobs_pred"],
                                                                                          abs=2e-3)
    assert row["offset"]["prediction"] == pytest.approx([case["offset_dx_pred"], case["offset_dy_pred"]], abs=2e-3)
    assert 0.0 <= row["brightness"]["prediction"] <= 1.0
    csv = mtl("predict", str(out), image, env=plugin_env)
    assert csv.returncode == 0 and csv.stdout.splitlines()[0] == ("image,blobs,offset_dx,offset_dy,brightness,"
                                                        "out_of_distribution,out_of_distribution_score")


def test_predict_without_the_plugin_names_the_unknown_kind(kinds_run, cache_env):
    out, _ = kinds_run
    done = mtl("predict", str(out), str(REPO / "README.md"), env=cache_env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "unknown task kind 'count'" in done.stderr and "Available: binary, classification" in done.stderr


def test_plugins_check_passes_a_plugin_with_new_kinds(plugin_env, tmp_path):
    done = mtl("plugins", "check", "kinds_fixture", env=plugin_env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "blobs (count)" in done.stdout and "offset (shift)" in done.stdout
