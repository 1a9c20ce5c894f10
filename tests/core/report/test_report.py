"""Report tables, the verdict against the baseline and Delta_m follow each kind's declarations."""

from __future__ import annotations

from mtl_core.report.markdown import beats_baseline, console_table, markdown_report, strata_tables
from mtl_core.workflow.crossval import delta_m


def _entry(kind: str, metrics: dict, baseline: dict, **extra) -> dict:
    return {"kind": kind, "unit": extra.pop("unit", ""), "n": 20, "metrics": metrics, "baseline": baseline, **extra}


GRADE = _entry("classification", {"accuracy": 0.8, "balanced_accuracy": 0.6, "f1_macro": 0.5, "f1_weighted": 0.7},
               {"accuracy": 0.75, "balanced_accuracy": 0.333, "f1_macro": 0.286})
FLAG = _entry("binary", {"accuracy": 0.9, "balanced_accuracy": 0.5, "f1_macro": 0.47, "f1": 0.123},
              {"accuracy": 0.9, "balanced_accuracy": 0.5, "f1_macro": 0.47})
SIZE = _entry("regression", {"mse": 4.0, "mae": 1.5, "rmse": 2.0}, {"mse": 9.0, "mae": 2.5}, unit="mm")
SIZE_X = _entry("regression", {"mse": 1.0, "mae": 0.5, "rmse": 1.0}, {"mse": 2.0, "mae": 1.0}, unit="px",
                part_of="nodule")
RANKED = _entry("ranked", {"kendall_tau": 0.4}, {"kendall_tau": 0.0})  # a kind this process never registered


def test_beating_the_baseline_needs_every_beats_metric():
    assert beats_baseline(GRADE) is True
    flat = GRADE | {"metrics": GRADE["metrics"] | {"balanced_accuracy": 0.3}}
    assert beats_baseline(flat) is False  # a better macro-F1 alone is not enough
    assert beats_baseline(FLAG) is False and beats_baseline(SIZE) is True
    assert beats_baseline(SIZE | {"metrics": {"mae": float("nan")}}) is None
    assert beats_baseline(RANKED) is None


def test_console_table_shows_balanced_accuracy_beside_accuracy():
    lines = console_table({"grade": GRADE, "size": SIZE}).splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["grade", "accuracy", "balanced_accuracy"]
    assert lines[1].split()[3] == "f1_macro" and lines[1].endswith("yes")
    assert lines[4].split()[:4] == ["size", "regression", "20", "mae"]


def test_report_tables_by_section():
    report = markdown_report({"plugin": "demo"}, {"tasks": {"grade": GRADE, "flag": FLAG, "size": SIZE,
                                                            "x": SIZE_X, "order": RANKED}})
    table1 = report.split("## Classification")[1].split("## ")[0]
    header = next(line for line in table1.splitlines() if line.startswith("| task"))
    flag = next(line for line in table1.splitlines() if line.startswith("| flag"))
    columns = dict(zip(header.split(" | "), flag.split(" | "), strict=True))
    assert columns["F1 (positive class)"] == "0.123" and columns["F1 (weighted)"] == "–"
    assert columns["Bal. Acc"] == "0.500" and columns["baseline Bal. Acc"] == "0.500"
    table2 = report.split("## Regression")[1].split("## ")[0]
    assert "| x | px | 20 |" in table2 and "| size | mm | 20 |" in table2  # a component shown as its own kind
    ranked = report.split("## Ranked")[1].split("## ")[0]
    assert "| task | unit | n | kendall_tau | baseline kendall_tau | beats baseline |" in ranked
    assert "| order |  | 20 | 0.400 | 0.000 | n/a |" in ranked


def test_strata_cells_show_each_entrys_summary_metrics():
    strata = {"site": {"a": {"grade": {"n": 5, "metrics": GRADE["metrics"]}, "x": {"n": 0, "metrics": {}}}}}
    lines = strata_tables(strata, {"grade": GRADE, "x": SIZE_X})
    assert "| value | grade (F1 / Acc / Bal. Acc) | x (MAE) |" in lines
    assert "| a | 0.500 / 0.800 / 0.600 (n=5) | – |" in lines


def test_delta_m_leaves_out_components_without_single_task_values():
    grade = GRADE | {"single_task": {"accuracy": 0.8, "f1_macro": 0.25}}  # +0% and +100%: +50%
    assert delta_m({"grade": grade, "x": SIZE_X}) == 50.0
    assert delta_m({"grade": grade, "size": SIZE}) is None  # a task without single-task values: undefined


# -- point tasks: their own section and localisation per stratum --------------------------------------------------

POINT_METRICS = {"distance": 40.0, "median_distance": 30.0, "hit_rate": 0.6, "mae_x": 25.0, "mae_y": 20.0,
                 "mae_extent": 3.0}
LOCATION = _entry("point", POINT_METRICS, {k: 4 * v for k, v in POINT_METRICS.items()} | {"hit_rate": 0.05},
                  unit="px")
POINT_PARTS = {"x": SIZE_X | {"part_of": "location"}, "y": SIZE_X | {"part_of": "location"},
               "size": SIZE | {"part_of": "location"}}
POINT_SCHEMA = {"name": "location", "kind": "point", "unit": "px", "frame": [2048.0, 2048.0], "axes": ["x", "y"],
                "extent": "size", "extent_unit": "mm", "extent_scale": 5.714, "hit_radius": None}


def _localisation(report: str) -> str:
    return report.split("## Localisation (point tasks)")[1].split("\n## ")[0]


def test_point_section_defines_hit_and_frame_and_compares_with_the_mean_point():
    tasks = {"grade": GRADE, "location": LOCATION, **POINT_PARTS}
    section = _localisation(markdown_report({"plugin": "demo", "share_heatmap": False}, {"tasks": tasks},
                                            [POINT_SCHEMA]))
    assert "px in the 2048 x 2048 frame (origin top left, x to the right, y down)" in section
    assert "A hit is a predicted point within one true size (a diameter; 5.71 px per mm)" in section
    assert "mean training point (and the mean size)" in section and "Beats the baseline on distance: yes" in section
    assert "| hit rate | 0.600 | 0.050 | yes |" in section and "| MAE size (mm) | 3.000 | 12.000 | yes |" in section
    assert "| distance (px) | 40.000 | 160.000 | yes |" in section
    assert "| MAE y (px) | 20.000 | 80.000 | yes |" in section
    assert "(`model.share_heatmap`): off" in section


def test_hit_without_an_extent_scale_is_the_hit_radius():
    schema = POINT_SCHEMA | {"extent": None, "extent_scale": None, "hit_radius": 50.0}
    section = _localisation(markdown_report({"share_heatmap": True, "plugin": "demo"}, {"tasks": {
        "location": LOCATION}}, [schema]))
    assert "A hit is a predicted point within 50.000 px of the true point (its `hit_radius`)." in section
    assert "(`model.share_heatmap`): on" in section
    default = _localisation(markdown_report({"plugin": "demo"}, {"tasks": {"location": LOCATION}},
                                            [schema | {"hit_radius": None}]))
    assert "within 144.815 px of the true point (5 % of the frame's diagonal" in default
    assert "share_heatmap" not in default  # a summary without it says nothing about it


def test_summary_states_whether_classification_reads_the_heatmap():
    report = markdown_report({"plugin": "demo", "share_heatmap": True}, {"tasks": {"grade": GRADE}})
    assert "- share_heatmap: True" in report.split("## Classification")[0]


def test_strata_show_localisation_per_value_without_repeating_the_components():
    strata = {"subtlety": {
        "subtlety 1": {"grade": {"n": 5, "metrics": GRADE["metrics"]},
                       "location": {"n": 4, "metrics": POINT_METRICS | {"hit_rate": 0.25}},
                       "x": {"n": 4, "metrics": {"mae": 25.0}}},
        "no nodule": {"grade": {"n": 3, "metrics": GRADE["metrics"]}, "location": {"n": 0, "metrics": {}}}}}
    lines = strata_tables(strata, {"grade": GRADE, "location": LOCATION, **POINT_PARTS})
    assert "| value | grade (F1 / Acc / Bal. Acc) |" in lines  # neither location nor x, y, size columns
    assert "Localisation of `location` by subtlety:" in lines
    assert ("| subtlety | n | distance (px) | median distance (px) | hit rate | MAE x (px) | MAE y (px) | "
            "MAE size (mm) |") in lines
    assert "| subtlety 1 | 4 | 40.000 | 30.000 | 0.250 | 25.000 | 20.000 | 3.000 |" in lines
    assert not any(line.startswith("| no nodule | 0 |") for line in lines)  # no point in that stratum: left out
