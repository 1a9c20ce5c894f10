"""Tests for mtl_core.workflow.compare: parsing --backbones / --ablations / --variant, unknown names with
suggestions, the rows and the table built from run results, and one comparison driven with a fake run."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mtl_core.errors import ConfigError, MTLError, WeightsError
from mtl_core.workflow.compare import (
    Variant,
    check_backbones,
    markdown_table,
    parse_ablations,
    parse_backbones,
    parse_variants,
)

compare_module = importlib.import_module("mtl_core.workflow.compare")  # the package exports compare(), not it
SHAPES = Path(__file__).resolve().parents[3] / "examples" / "shapes"


# ---- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "sets"), [
    ("resnet18", [["resnet18"]]),
    ("resnet18;densenet161+efficientnet_b7", [["resnet18"], ["densenet161", "efficientnet_b7"]]),
    (" a + b ; c ;; ", [["a", "b"], ["c"]]),  # spaces and empty sets are ignored
    ("a+;+b", [["a"], ["b"]]),
])
def test_parse_backbones(spec, sets):
    assert parse_backbones(spec) == sets


@pytest.mark.parametrize("spec", ["", " ; ", "+", "a;+"])
def test_backbones_that_name_nothing_are_one_clear_error(spec):
    # "a;+" must fail here: otherwise `mtl compare` trains row a in full and only then stops at the empty set
    with pytest.raises(ConfigError, match=r"--backbones .* names no backbone in a set; separate sets with ';'"):
        parse_backbones(spec)


@pytest.mark.parametrize(("spec", "names"), [
    (None, ["none"]),
    ("", ["none"]),
    ("no_residual", ["none", "no_residual"]),
    (" equal_weights , none,no_label_smoothing ", ["none", "equal_weights", "no_label_smoothing"]),
    ("no_residual,no_residual", ["none", "no_residual"]),  # twice would be two runs into one folder
])
def test_parse_ablations_always_starts_with_the_configuration_as_it_is(spec, names):
    assert parse_ablations(spec) == names


def test_an_unknown_ablation_suggests_the_close_one_and_lists_all():
    with pytest.raises(ConfigError, match=r"unknown ablation 'no_residul'\. Did you mean 'no_residual'\? "
                                          r"Available: equal_weights, no_label_smoothing, no_residual, none"):
        parse_ablations("no_residual,no_residul")


def test_parse_variants_strips_and_groups():
    assert parse_variants(None) == {} and parse_variants([]) == {}
    assert parse_variants([" heads : model.pooling=map ", "heads:train.lr=0.1"]) == {
        "heads": ["model.pooling=map", "train.lr=0.1"]}


def test_a_variant_may_not_reuse_an_ablation_name():
    with pytest.raises(ConfigError, match="'equal_weights' is a built-in ablation"):
        parse_variants(["equal_weights:loss.strategy=dwa"])


def test_variant_folder_names():
    assert Variant(["a", "b"], "none").slug == "a+b"
    assert Variant(["resnet18"], "no_residual").slug == "resnet18__no_residual"
    assert Variant(["hf-hub:org/model v2"], "none").slug == "hf-hub_org_model_v2"  # a safe folder name


# ---- backbone names and weights --------------------------------------------------------------------------------


def test_an_unknown_backbone_suggests_the_close_name():
    with pytest.raises(MTLError, match=r"unknown backbone 'densnet121'\. Did you mean .*'densenet121'"):
        check_backbones([["resnet18"], ["densnet121"]], allow_random=True)


def test_backbones_without_weights_need_allow_random():
    with pytest.raises(WeightsError, match=r"no pretrained weights on this machine for test_efficientnet, "
                                           r"test_resnet: .*--allow-random"):
        check_backbones([["test_resnet"], ["test_efficientnet", "test_resnet"]], allow_random=False)
    check_backbones([["test_resnet"], ["test_efficientnet", "test_resnet"]], allow_random=True)  # no error


# ---- rows and tables from run results --------------------------------------------------------------------------


def _cv_metrics(f1: float, f1_std: float, mae: float, wall: float) -> dict:
    """metrics.json of a cross-validated run (two folds): a classification task and a regression task."""
    grade = {"kind": "classification", "unit": "", "n": 40,
             "metrics": {"f1_macro": f1, "accuracy": 0.8, "balanced_accuracy": 0.7},
             "metrics_std": {"f1_macro": f1_std, "accuracy": 0.1, "balanced_accuracy": 0.0},
             "metrics_ci95": {"f1_macro": [f1 - 0.2, f1 + 0.2], "accuracy": [0.7, 0.9],
                              "balanced_accuracy": [0.7, 0.7]},
             "folds": {"f1_macro": [f1 - f1_std, f1 + f1_std], "accuracy": [0.7, 0.9], "balanced_accuracy": [0.7, 0.7]}}
    size = {"kind": "regression", "unit": "mm", "n": 30,
            "metrics": {"mse": 4.0, "mae": mae, "mse_scaled": 0.0016, "mae_scaled": 0.03125},
            "metrics_std": {"mse": 1.0, "mae": 0.25, "mse_scaled": 0.0004, "mae_scaled": 0.005},
            "folds": {"mse": [3.0, 5.0], "mae": [mae - 0.25, mae + 0.25], "mse_scaled": [0.0, 0.0],
                      "mae_scaled": [0.0, 0.0]}}
    return {"tasks": {"grade": grade, "size": size}, "delta_m": 2.5,
            "run": {"wall_time_s": wall, "weights": "random"}}


def test_a_row_holds_every_metric_with_its_interval():
    row = compare_module._row(Variant(["a", "b"], "no_residual"), _cv_metrics(0.6, 0.05, 1.25, 12.0))
    assert (row["backbones"], row["ablation"], row["delta_m"], row["weights"]) == ("a+b", "no_residual", 2.5, "random")
    assert row["grade_f1_macro"] == 0.6 and row["grade_accuracy"] == 0.8
    assert (row["grade_f1_macro_ci95_low"], row["grade_f1_macro_ci95_high"]) == (pytest.approx(0.4),
                                                                                  pytest.approx(0.8))
    assert row["size_mae"] == 1.25 and row["size_mse_scaled"] == 0.0016 and row["size_mae_scaled"] == 0.03125
    assert row["size_mae_ci95_low"] is None  # a run without intervals leaves them empty


def test_the_markdown_table_shows_mean_and_spread_per_row():
    results = [_cv_metrics(0.6, 0.05, 1.25, 12.0), _cv_metrics(0.7, 0.0125, 2.5, 13.0)]
    rows = [compare_module._row(Variant(["a"], "none"), results[0]),
            compare_module._row(Variant(["a"], "equal_weights"), results[1])]
    lines = markdown_table(rows, results).splitlines()
    assert lines[0] == "# Comparison"
    assert lines[2] == ("| backbones | ablation | grade F1 | grade Acc | grade Bal. Acc | size MSE [0,1] | "
                        "size MAE [0,1] | size MAE (mm) | Delta_m (%) | wall (s) |")
    assert lines[3] == "|" + "---|" * 10
    assert lines[4] == ("| a | none | 0.600 ± 0.050 | 0.800 ± 0.100 | 0.700 ± 0.000 | 0.00160 ± 0.00040 | "
                        "0.03125 ± 0.00500 | 1.250 ± 0.250 | +2.50 | 12 |")
    assert lines[5].startswith("| a | equal_weights | 0.700 ± 0.013 |") and lines[5].endswith("| 2.500 ± 0.250 | "
                                                                                               "+2.50 | 13 |")


def test_a_single_training_shows_plain_values():
    metrics = _cv_metrics(0.6, 0.05, 1.25, 1.0)
    for task in metrics["tasks"].values():
        task["folds"] = {k: [v] for k, v in task["metrics"].items()}
    rows = [compare_module._row(Variant(["a"], "none"), metrics)]
    assert markdown_table(rows, [metrics]).splitlines()[4] == (
        "| a | none | 0.600 | 0.800 | 0.700 | 0.00160 | 0.03125 | 1.250 | +2.50 | 1 |")


# ---- a whole comparison with a fake run ------------------------------------------------------------------------


def test_compare_runs_every_set_and_ablation_with_its_settings(tmp_path, monkeypatch):
    seen = []

    def fake_execute(config, *, output, **_):
        seen.append({"backbones": list(config.model.backbones), "residual": config.model.trunk.residual,
                     "strategy": config.loss.strategy, "smoothing": config.tasks.get("shape"), "output": output,
                     "lr": config.train.lr, "fallback": config.fallback})
        return SimpleNamespace(metrics=_cv_metrics(0.5 + len(seen) / 10, 0.01, 1.0, 1.0))

    monkeypatch.setattr(compare_module, "execute", fake_execute)
    frame = compare_module.compare(SHAPES, "test_resnet;test_resnet+test_efficientnet",
                                   ablations="no_residual,no_label_smoothing,equal_weights", output=tmp_path / "cmp",
                                   allow_random=True, say=lambda _: None, variants=["fast:train.lr=0.5"])
    names = ["none", "no_residual", "no_label_smoothing", "equal_weights", "fast"]
    assert list(frame["ablation"]) == names * 2
    assert list(frame["backbones"]) == ["test_resnet"] * 5 + ["test_resnet+test_efficientnet"] * 5
    assert [s["backbones"] for s in seen] == [["test_resnet"]] * 5 + [["test_resnet", "test_efficientnet"]] * 5
    by_name = dict(zip(names, seen[:5], strict=True))
    assert by_name["none"]["residual"] and by_name["none"]["strategy"] == "static"
    assert by_name["none"]["smoothing"] is None
    assert not by_name["no_residual"]["residual"]
    assert by_name["no_label_smoothing"]["smoothing"].label_smoothing == 0  # the one task that smooths
    assert by_name["equal_weights"]["strategy"] == "equal"
    assert by_name["fast"]["lr"] == 0.5 and by_name["none"]["lr"] == pytest.approx(1e-3)
    assert all(s["fallback"] is None for s in seen)  # every row runs exactly the backbones it names
    assert seen[6]["output"] == tmp_path / "cmp" / "test_resnet+test_efficientnet__no_residual"
    written = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(written["grade_f1_macro"]) == pytest.approx([0.5 + i / 10 for i in range(1, 11)])
    assert (tmp_path / "cmp" / "compare.md").read_text().count("\n| test_resnet") == 10


def test_a_variant_name_with_a_pipe_or_newline_stays_one_cell():
    rows = [{"backbones": "a+b", "ablation": "wide | deep\nv2"}]
    results = [{"tasks": {"kind": {"kind": "classification", "metrics": {"accuracy": 0.5}}}}]
    table = markdown_table(rows, results).splitlines()
    body = [line for line in table if line.startswith("| a+b")]
    assert len(body) == 1 and "wide \\| deep v2" in body[0]


# ---- --weightings and --architectures ----------------------------------------------------------------------------


def test_weightings_and_architectures_are_checked_names():
    assert compare_module.parse_names(None, ["a"], "--weightings", "x") == [None]
    assert compare_module.parse_names(" static; pcgrad ,static", ["static", "pcgrad"], "--weightings", "x") == [
        "static", "pcgrad"]
    with pytest.raises(ConfigError, match=r"unknown weighting strategy 'pcgard'\. Did you mean 'pcgrad'"):
        compare_module.compare(SHAPES, "test_resnet", weightings="static;pcgard", output=Path("unused"),
                               allow_random=True, say=lambda _: None)
    with pytest.raises(ConfigError, match=r"--architectures ' ; ' names nothing"):
        compare_module.parse_names(" ; ", ["mmoe"], "--architectures", "sharing architecture")


def test_compare_crosses_weightings_with_architectures(tmp_path, monkeypatch):
    seen = []

    def fake_execute(config, *, output, **_):
        seen.append((config.loss.strategy, config.model.trunk.architecture, output.name))
        return SimpleNamespace(metrics=_cv_metrics(0.5, 0.01, 1.0, 1.0))

    monkeypatch.setattr(compare_module, "execute", fake_execute)
    frame = compare_module.compare(SHAPES, "test_resnet", weightings="static;pcgrad", architectures="residual;mmoe",
                                   output=tmp_path / "cmp", allow_random=True, say=lambda _: None)
    assert seen == [("static", "residual", "test_resnet__static__residual"),
                    ("static", "mmoe", "test_resnet__static__mmoe"),
                    ("pcgrad", "residual", "test_resnet__pcgrad__residual"),
                    ("pcgrad", "mmoe", "test_resnet__pcgrad__mmoe")]
    assert list(frame["weighting"]) == ["static", "static", "pcgrad", "pcgrad"]
    table = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert table[2].startswith("| backbones | ablation | weighting | architecture | grade F1 |")
    assert table[6].startswith("| test_resnet | none | pcgrad | residual | 0.500 ± 0.010 |")
