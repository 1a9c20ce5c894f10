"""Run results as Markdown tables in the layout of the paper's Tables 1 (classification) and 2 (regression)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def cell(task: dict[str, Any], key: str, digits: int = 3) -> str:
    """``mean ± std`` when the task was measured over several trainings, else the value."""
    value = task["metrics"].get(key)
    std = task.get("metrics_std", {}).get(key)
    if std is None or len(task.get("folds", {}).get(key, [])) < 2:
        return _f(value, digits)
    return f"{_f(value, digits)} ± {_f(std, digits)}"


def _single(task: dict[str, Any], key: str, digits: int = 3) -> str:
    return _f(task["single_task"].get(key), digits) if task.get("single_task") else "n/a"


def classification_table(tasks: dict[str, Any]) -> list[str]:
    """Table 1 layout: per task accuracy and F1, beside the single-task model and the trivial baseline."""
    rows = ["| task | n | Acc | F1 (macro) | F1 (weighted) | single-task Acc | single-task F1 | baseline Acc | "
            "baseline F1 (macro) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        if t["kind"] == "regression":
            continue
        b = t["baseline"]
        weighted = "f1_weighted" if "f1_weighted" in t["metrics"] else "f1"
        rows.append(f"| {name} | {t['n']} | {cell(t, 'accuracy')} | {cell(t, 'f1_macro')} | {cell(t, weighted)} | "
                    f"{_single(t, 'accuracy')} | {_single(t, 'f1_macro')} | {_f(b['accuracy'])} | "
                    f"{_f(b['f1_macro'])} |")
    return rows if len(rows) > 2 else []


def regression_table(tasks: dict[str, Any]) -> list[str]:
    """Table 2 layout: MSE and MAE in units and scaled to [0, 1], beside the training-mean baseline."""
    rows = ["| target | unit | n | MSE | MAE | RMSE | MSE [0,1] | MAE [0,1] | single-task MAE | baseline MSE | "
            "baseline MAE |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        if t["kind"] != "regression":
            continue
        b = t["baseline"]
        rows.append(f"| {name} | {t.get('unit', '')} | {t['n']} | {cell(t, 'mse')} | {cell(t, 'mae')} | "
                    f"{cell(t, 'rmse')} | {cell(t, 'mse_scaled', 5)} | {cell(t, 'mae_scaled', 5)} | "
                    f"{_single(t, 'mae')} | {_f(b['mse'])} | {_f(b['mae'])} |")
    return rows if len(rows) > 2 else []


def beats_baseline(task: dict[str, Any]) -> bool | None:
    """Higher macro-F1 for classification, lower MAE for regression; None when undefined."""
    m, b = task["metrics"], task["baseline"]
    if task["kind"] == "regression":
        if m.get("mae") is None or b.get("mae") is None:
            return None
        return m["mae"] < b["mae"]
    if m.get("f1_macro") is None or b.get("f1_macro") is None:
        return None
    return m["f1_macro"] > b["f1_macro"]


def console_table(tasks: dict[str, Any]) -> str:
    """A plain-text results table for the terminal."""
    lines = [f"{'task':<12} {'kind':<14} {'n':>4}  {'metric':<9} {'model':>16} {'baseline':>10}  beats"]
    for name, t in tasks.items():
        metric = "mae" if t["kind"] == "regression" else "f1_macro"
        verdict = {True: "yes", False: "NO", None: "n/a"}[beats_baseline(t)]
        lines.append(f"{name:<12} {t['kind']:<14} {t['n']:>4}  {metric:<9} {cell(t, metric):>16} "
                     f"{_f(t['baseline'].get(metric)):>10}  {verdict}")
        if t["kind"] != "regression":
            lines.append(f"{'':<12} {'':<14} {'':>4}  {'accuracy':<9} {cell(t, 'accuracy'):>16} "
                         f"{_f(t['baseline'].get('accuracy')):>10}")
    return "\n".join(lines)


def strata_tables(strata: dict[str, Any], tasks: dict[str, Any]) -> list[str]:
    """The paper's Tables 3/4 for every stratum: each task's main metric per stratum value, with its count."""
    out: list[str] = []
    for name, values in strata.items():
        header = ["value"] + [f"{t} ({'MAE' if tasks[t]['kind'] == 'regression' else 'Acc / F1'})" for t in tasks]
        out += ["", f"### By {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for value, per_task in values.items():
            cells = [value]
            for t, entry in per_task.items():
                m, n = entry["metrics"], entry["n"]
                if n == 0:
                    cells.append("–")
                elif tasks[t]["kind"] == "regression":
                    cells.append(f"{_f(m.get('mae'))} (n={n})")
                else:
                    cells.append(f"{_f(m.get('accuracy'))} / {_f(m.get('f1_macro'))} (n={n})")
            out.append("| " + " | ".join(cells) + " |")
    return out


def markdown_report(summary: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The run's ``report.md``."""
    tasks = metrics["tasks"]
    protocol = metrics.get("protocol", {})
    out = [f"# Run report: {summary['plugin']}", "", "## Configuration and provenance", ""]
    out += [f"- {k}: {v}" for k, v in summary.items()]
    out += [f"- protocol: {k}: {v}" for k, v in protocol.items()]
    out += [f"- note: {n}" for n in metrics.get("notes", [])]
    dm = metrics.get("delta_m")
    out += ["", f"Multi-task gain Delta_m over single-task models: {_f(dm, 2)} %" if dm is not None else
            "Multi-task gain Delta_m: not computed (single-task baselines off)"]
    out += ["", "## Classification (layout of the paper's Table 1)", ""] + (classification_table(tasks) or ["none"])
    out += ["", "## Regression (layout of the paper's Table 2)", "",
            "Errors in the target's units; `[0,1]` columns divide by the target's value range "
            "(MSE by its square).", ""] + (regression_table(tasks) or ["none"])
    if metrics.get("strata"):
        out += ["", "## Breakdowns by stratum (layout of the paper's Tables 3 and 4)", "",
                "Out-of-fold predictions of the first repeat; n is the number of labelled cases in the cell."]
        out += strata_tables(metrics["strata"], tasks)
    out += ["", "## Labelled cases per task (first split)", "", "| task | train | val | test |", "|---|---|---|---|"]
    for name, counts in metrics.get("label_counts", {}).items():
        out.append(f"| {name} | {counts.get('train', 0)} | {counts.get('val', 0)} | {counts.get('test', 0)} |")
    return "\n".join(out) + "\n"
