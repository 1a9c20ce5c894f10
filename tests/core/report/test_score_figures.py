"""A class task's ROC / precision-recall curves and reliability diagram in the figures and report.html, and the
'Ranking and calibration' section of report.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from mtl_core.report import markdown_report
from mtl_core.report.figures import figure_plan, write_figures
from mtl_core.report.html import write_html

TASKS = [{"name": "grade", "kind": "classification", "unit": "", "classes": ["low", "mid", "high"]},
         {"name": "nodule", "kind": "binary", "unit": "", "classes": ["absent", "present"]}]


def _predictions(n: int = 40) -> pd.DataFrame:
    """predictions.csv of a run: class names, the predicted class's probability and one column per scored class."""
    rng = np.random.default_rng(0)
    grade = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n) + np.eye(3)[grade]
    probs /= probs.sum(axis=1, keepdims=True)
    nodule = rng.integers(0, 2, n)
    p = np.clip(0.3 + 0.4 * nodule + rng.normal(0, 0.2, n), 0.01, 0.99)
    classes = np.array(TASKS[0]["classes"])
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(n)], "repeat": 0, "fold": 0,
                          "grade_true": classes[grade], "grade_pred": classes[probs.argmax(1)],
                          "grade_prob": probs.max(1)})
    for k, name in enumerate(classes):
        frame[f"grade_prob_{name}"] = probs[:, k]
    frame["grade_true"] = frame["grade_true"].where(np.arange(n) % 9 != 0, "")  # missing labels
    labels = np.array(["absent", "present"])
    frame["nodule_true"], frame["nodule_pred"] = labels[nodule], labels[(p > 0.5).astype(int)]
    frame["nodule_prob"], frame["nodule_prob_present"] = np.maximum(p, 1 - p), p
    return frame


def test_roc_and_calibration_figures_are_drawn_and_shown_in_report_html(tmp_path):
    paths = write_figures(tmp_path, TASKS, _predictions(), [])
    names = [p.name for p in paths]
    assert names == ["confusion_grade.png", "confusion_nodule.png", "roc_grade.png", "roc_nodule.png",
                     "calibration_grade.png", "calibration_nodule.png"]
    for path in paths:
        with Image.open(path) as image:
            assert min(image.size) > 300
    html = write_html(tmp_path, "# Run report: demo\n", paths).read_text()
    assert "<figcaption>ROC and precision-recall curves: grade</figcaption>" in html
    assert "<figcaption>Reliability diagram (calibration): nodule</figcaption>" in html


def test_a_run_folder_without_probability_columns_gets_no_roc_figure():
    old = _predictions().drop(columns=["grade_prob_low", "grade_prob_mid", "grade_prob_high", "nodule_prob_present"])
    stems = [stem for stem, _ in figure_plan(TASKS, old, [])]
    assert stems == ["confusion_grade", "confusion_nodule"]


def _entry(kind: str, **extra) -> dict:
    metrics = {"accuracy": 0.7, "balanced_accuracy": 0.6, "f1_macro": 0.55, "roc_auc": 0.8125, "pr_auc": 0.5,
               "sensitivity": float("nan"), "specificity": float("nan"), "ece": 0.05}
    metrics |= {"f1": 0.4} if kind == "binary" else {"f1_weighted": 0.6}
    return {"kind": kind, "unit": "", "n": 20, "metrics": metrics,
            "baseline": {"accuracy": 0.5, "roc_auc": 0.5, "pr_auc": 0.3, "ece": 0.02},
            "threshold": {"rule": "youden", "values": [[None]]}, **extra}


def test_report_md_has_the_ranking_and_calibration_table_with_intervals_and_reasons():
    nodule = _entry("binary", bootstrap_ci95={"roc_auc": [0.7, 0.9]},
                    undefined={"sensitivity": "no validation part to choose the decision threshold on"})
    report = markdown_report({"plugin": "demo"}, {"tasks": {"nodule": nodule}})
    section = report.split("## Ranking and calibration (class tasks)")[1].split("\n## ")[0]
    assert "| nodule | 20 | 0.812 [0.700, 0.900] | 0.500 | n/a | n/a | 0.050 | n/a | 0.500 | 0.300 | 0.020 |" \
        in section
    assert "bootstrap 95 % interval (1000 resamples of the held-out cases, seed 0" in section
    assert "10 equal-width bins" in section and "Youden's J" in section
    assert "- `nodule` Sens.: n/a, no validation part to choose the decision threshold on" in section
    table1 = report.split("## Classification")[1].split("## ")[0]
    header = next(line for line in table1.splitlines() if line.startswith("| task"))
    row = next(line for line in table1.splitlines() if line.startswith("| nodule"))
    columns = dict(zip(header.split(" | "), row.split(" | "), strict=True))
    assert columns["F1 (positive class)"] == "0.400" and columns["F1 (weighted)"] == "–"  # never mislabelled
