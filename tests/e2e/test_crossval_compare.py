"""Cross-validation with uncertainty, Delta_m, breakdowns, the HTML report, and `mtl compare`."""

from __future__ import annotations

import json
import statistics

import pandas as pd
import pytest

from .conftest import EXAMPLE, FAST, mtl

QUICK = [*FAST, "--set", "train.epochs=8", "--set", "train.patience=3"]
PRIMARY = {"classification": "f1_macro", "regression": "mae", "point": "distance"}
SEVEN = "test_resnet;test_efficientnet;test_convnext;test_byobnet;test_nfnet;alexnet;test_resnet+test_efficientnet"


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, phantom, cache_env):
    out = tmp_path_factory.mktemp("cv") / "run"
    done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), "--folds", "3", "--repeats", "2",
               *QUICK, env=cache_env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done


def test_cv_metrics_carry_spread_interval_and_delta_m(cv_run):
    out, done = cv_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["folds"] == 3 and metrics["protocol"]["trainings"] == 6
    assert isinstance(metrics["delta_m"], float)
    assert [name for name, task in metrics["tasks"].items() if "part_of" in task] == ["x", "y", "size"]
    for name, task in metrics["tasks"].items():
        key = PRIMARY[task["kind"]]
        values = task["folds"][key]
        assert len(values) == 6
        mean, std = statistics.fmean(values), statistics.stdev(values)
        assert task["metrics"][key] == pytest.approx(mean, rel=1e-9, abs=1e-12), name
        assert task["metrics_std"][key] == pytest.approx(std, rel=1e-9, abs=1e-12), name
        # the 95 % interval of the mean of six trainings: Student's t with 5 degrees of freedom (2.5706), not 1.96;
        # its coverage is checked on simulated folds in tests/core/workflow/test_crossval.py
        half = 2.570582 * std / 6**0.5
        assert task["metrics_ci95"][key] == pytest.approx([mean - half, mean + half], rel=1e-6, abs=1e-9), name
        if "part_of" not in task:  # x, y and size are parts of location: its single-task model is theirs
            assert key in task["single_task"], name
    assert "Delta_m" in done.stdout


def test_cv_predictions_are_out_of_fold(cv_run):
    out, _ = cv_run
    frame = pd.read_csv(out / "predictions.csv")
    first = frame[frame["repeat"] == 0]
    assert first["id"].is_unique and len(first) == 247  # every case held out exactly once per repeat
    assert set(frame["fold"]) == {0, 1, 2} and set(frame["repeat"]) == {0, 1}


def test_report_has_uncertainty_breakdowns_and_figures(cv_run):
    out, _ = cv_run
    report = (out / "report.md").read_text()
    assert " ± " in report and "Delta_m" in report
    assert "### By size" in report and "(n=" in report and "### By subtlety" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 9  # 4 confusion + the points + 3 scatter (x, y, size) + curves
    metrics = json.loads((out / "metrics.json").read_text())
    sizes = metrics["strata"]["size"]
    assert set(sizes) <= {"<10 mm", "10-20 mm", "20-30 mm", ">=30 mm"}
    assert sum(v["location"]["n"] for v in sizes.values()) == 154


def test_too_many_folds_is_a_clean_error(phantom, cache_env):
    done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--folds", "1000", *QUICK, env=cache_env)
    assert done.returncode == 2 and "folds" in done.stderr and "Traceback" not in done.stderr


def test_compare_seven_backbone_sets(phantom, tmp_path, cache_env):
    out = tmp_path / "cmp"
    done = mtl("compare", str(EXAMPLE), "--data", str(phantom), "--backbones", SEVEN, "--output", str(out),
               "--allow-random", *QUICK, env=cache_env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(out / "compare.csv")
    assert len(frame) == 7
    assert list(frame["backbones"])[-1] == "test_resnet+test_efficientnet"
    for task in ("subtlety", "state", "position", "diagnosis"):
        assert {f"{task}_accuracy", f"{task}_f1_macro"} <= set(frame.columns)
    assert {"location_distance", "location_hit_rate"} <= set(frame.columns)
    for task in ("x", "y", "size"):  # the point's components, as the paper's regression columns
        assert {f"{task}_mse_scaled", f"{task}_mae_scaled", f"{task}_mae"} <= set(frame.columns)
    assert (out / "compare.md").read_text().count("\n|") >= 8


def test_compare_ablations(phantom, tmp_path, cache_env):
    out = tmp_path / "abl"
    done = mtl("compare", str(EXAMPLE), "--data", str(phantom), "--backbones", "test_resnet", "--ablations",
               "no_residual,no_label_smoothing,equal_weights", "--output", str(out), "--allow-random", *QUICK,
               env=cache_env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(out / "compare.csv")
    assert list(frame["ablation"]) == ["none", "no_residual", "no_label_smoothing", "equal_weights"]
    config = (out / "test_resnet__no_residual" / "config.yaml").read_text()
    assert "residual: false" in config


def test_compare_refuses_missing_weights_and_unknown_names(phantom, tmp_path, cache_env):
    done = mtl("compare", str(EXAMPLE), "--data", str(phantom), "--backbones", "test_resnet",
               "--output", str(tmp_path / "c"), *QUICK, env=cache_env)
    assert done.returncode == 2 and "--allow-random" in done.stderr and "Traceback" not in done.stderr
    done = mtl("compare", str(EXAMPLE), "--data", str(phantom), "--backbones", "resnet18;densnet121",
               "--output", str(tmp_path / "c"), "--allow-random", *QUICK, env=cache_env)
    assert done.returncode == 2 and "densenet121" in done.stderr
