"""Names, units and stratum values from the data cannot change the structure of report.md / report.html, crash a
figure, or blow a confusion matrix up to gigapixels."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_core.report import markdown_cell, markdown_report, markdown_text
from mtl_core.report.figures import CONFUSION_CLASSES_ENV, render_confusion, render_figures, write_figures
from mtl_core.report.html import _cells, markdown_to_html


def _entry(kind: str, metrics: dict, baseline: dict, unit: str = "") -> dict:
    return {"kind": kind, "unit": unit, "n": 20, "metrics": metrics, "baseline": baseline}


GRADE = _entry("classification", {"accuracy": 0.8, "balanced_accuracy": 0.6, "f1_macro": 0.5},
               {"accuracy": 0.75, "balanced_accuracy": 0.333, "f1_macro": 0.286})
SIZE = _entry("regression", {"mse": 4.0, "mae": 1.5, "rmse": 2.0}, {"mse": 9.0, "mae": 2.5})
HOSTILE = ["ward 7\n| injected | row |", "a|b", "# heading?", "line\r\nbreak", "tab\there", "back\\", "x\\|y",
           "\u2028sep", "=1+1", "<script>alert(1)</script>", "$5 - $10", "`code"]


def _report(names: list[str], values: list[str], unit: str = "mm") -> str:
    tasks = {names[0]: GRADE, names[1]: SIZE | {"unit": unit}}
    per_value = {v: {names[0]: {"n": 3, "metrics": GRADE["metrics"]}, names[1]: {"n": 2, "metrics": SIZE["metrics"]}}
                 for v in values}
    metrics = {"tasks": tasks, "strata": {names[2]: per_value},
               "label_counts": {n: {"train": 1, "val": 1, "test": 1} for n in names[:2]}}
    return markdown_report({"plugin": names[3], "data": names[4]}, metrics)


def _shape(report: str) -> list[tuple[str, int]]:
    """The structure of a report: per line its kind (table row, heading, bullet, text, blank) and cell count."""
    out = []
    for line in report.splitlines():
        if line.startswith("|"):
            out.append(("row", len(_cells(line))))
        elif line.startswith("#"):
            out.append(("heading", len(line) - len(line.lstrip("#"))))
        else:
            out.append(("bullet" if line.startswith("- ") else "text" if line.strip() else "blank", 0))
    return out


PLAIN = ["grade", "size", "site", "demo", "data/x"]


def test_markdown_cell_and_text():
    assert markdown_cell("a|b\nc") == "a\\|b c"
    assert markdown_cell("back\\") == "back\\\\"
    assert markdown_text("one\rtwo\u2028three\x85four") == "one two three four"
    assert _cells("| " + markdown_cell("x\\|y") + " | " + markdown_cell("a|b") + " |") == ["x\\|y", "a|b"]


def test_hostile_strata_values_and_names_keep_the_report_structure():
    plain = _report(PLAIN, [f"v{i}" for i in range(len(HOSTILE))])
    hostile = _report(HOSTILE[:5], HOSTILE, unit="$ | mm\n")
    assert _shape(hostile) == _shape(plain)
    html_plain, html_hostile = markdown_to_html(plain), markdown_to_html(hostile)
    for tag in ("<tr>", "<td", "<th>", "<h2>", "<h3>", "<li>", "<table>"):
        assert html_hostile.count(tag) == html_plain.count(tag), tag
    assert "<script>" not in html_hostile and "&lt;script&gt;" in html_hostile
    table = hostile.split("### By")[1].split("\n\n")[1].splitlines()
    values = [_cells(line)[0] for line in table[2:]]
    assert values == [markdown_text(v).strip() for v in HOSTILE]  # one cell each, as it was, line breaks as spaces


TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXT, min_size=5, max_size=5, unique=True), st.lists(TEXT, min_size=1, max_size=4, unique=True),
       TEXT)
def test_any_names_and_values_keep_the_markdown_table_structure(names, values, unit):
    plain = _report(PLAIN, [f"v{i}" for i in range(len(values))])
    assert _shape(_report(names, values, unit)) == _shape(plain)


# ---- figures ----------------------------------------------------------------------------------------------------

DOLLARS = ["$5 - $10", "$x^$", "$\\frac{$", "$\\alpha$", "plain"]  # the 2nd and 3rd crashed mathtext


def _predictions(classes: list[str], n: int, seed: int = 0, weights=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"c{i}" for i in range(n)], "cls_true": rng.choice(classes, n, p=weights),
                         "cls_pred": rng.choice(classes, n), "v$_true": rng.uniform(0, 1, n),
                         "v$_pred": rng.uniform(0, 1, n)})


def test_dollar_signs_in_names_and_units_are_drawn_as_written(tmp_path):
    tasks = [{"name": "cls", "kind": "classification", "unit": "", "classes": DOLLARS},
             {"name": "v$", "kind": "regression", "unit": "$ per $m^$"}]
    history = {"train": [{"total": 1.0, "cls": 0.5, "v$": 0.5}] * 3, "val": [{"total": 1.0, "cls": 0.5, "v$": 0.5}] * 3,
               "weights": [{"cls": 1.0, "v$": 1.0}] * 3, "best_epoch": 1}
    paths = write_figures(tmp_path, tasks, _predictions(DOLLARS, 40), [history])
    assert [p.name for p in paths] == ["confusion_cls.png", "scatter_v.png", "learning_curves.png",
                                       "loss_weights.png"]
    (_, fig), *_ = render_figures(tasks, _predictions(DOLLARS, 40), [history])
    from matplotlib.text import Text

    fig.canvas.draw()
    shown = {t.get_text() for t in fig.findobj(Text)}
    assert {"$5 - $10", "$x^$", "$\\alpha$"} <= shown  # as written, not parsed


def test_many_classes_show_the_most_frequent_and_say_so():
    classes = [f"class {i:03d}" for i in range(400)]
    weights = np.r_[np.full(5, 0.1), np.full(395, 0.5 / 395)]  # five frequent classes
    fig = render_confusion({"name": "cls", "classes": classes}, _predictions(classes, 2000, 1, weights))
    width, height = fig.get_size_inches() * fig.dpi
    assert width * height < 4000 * 4000  # not 400 x 400 cells of 94 px: 1.4 gigapixels
    title = fig.axes[0].get_title()
    assert "top 29 of 400 classes by support" in title and "accuracy" in title
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(ticks) == 30 and ticks[-1].replace("\n", " ") == "(371 other classes)"
    assert all(f"class {i:03d}" in ticks for i in range(5))  # the five frequent ones are kept


def test_the_class_limit_is_an_environment_variable(monkeypatch):
    classes = ["a", "b", "c", "d", "e", "f"]
    monkeypatch.setenv(CONFUSION_CLASSES_ENV, "3")
    fig = render_confusion({"name": "cls", "classes": classes}, _predictions(classes, 60))
    assert len(fig.axes[0].get_xticklabels()) == 3
    monkeypatch.setenv(CONFUSION_CLASSES_ENV, "lots")
    with pytest.raises(Exception, match=re.escape(CONFUSION_CLASSES_ENV)):
        render_confusion({"name": "cls", "classes": classes}, _predictions(classes, 60))
