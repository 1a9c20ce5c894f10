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


def classification_table(tasks: dict[str, Any]) -> list[str]:
    """Table 1 layout: per task accuracy and F1, beside the trivial baseline."""
    rows = ["| task | n | Acc | F1 (macro) | F1 (weighted) | baseline Acc | baseline F1 (macro) |",
            "|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        if t["kind"] == "regression":
            continue
        m, b = t["metrics"], t["baseline"]
        rows.append(f"| {name} | {t['n']} | {_f(m['accuracy'])} | {_f(m['f1_macro'])} | "
                    f"{_f(m.get('f1_weighted', m.get('f1')))} | {_f(b['accuracy'])} | {_f(b['f1_macro'])} |")
    return rows if len(rows) > 2 else []


def regression_table(tasks: dict[str, Any]) -> list[str]:
    """Table 2 layout: MSE and MAE in units and scaled to [0, 1], beside the training-mean baseline."""
    rows = ["| target | unit | n | MSE | MAE | RMSE | MSE [0,1] | MAE [0,1] | baseline MSE | baseline MAE |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        if t["kind"] != "regression":
            continue
        m, b = t["metrics"], t["baseline"]
        rows.append(f"| {name} | {t.get('unit', '')} | {t['n']} | {_f(m['mse'])} | {_f(m['mae'])} | "
                    f"{_f(m['rmse'])} | {_f(m.get('mse_scaled'), 5)} | {_f(m.get('mae_scaled'), 5)} | "
                    f"{_f(b['mse'])} | {_f(b['mae'])} |")
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
    lines = [f"{'task':<12} {'kind':<14} {'n':>4}  {'metric':<9} {'model':>10} {'baseline':>10}  beats"]
    for name, t in tasks.items():
        metric = "mae" if t["kind"] == "regression" else "f1_macro"
        verdict = {True: "yes", False: "NO", None: "n/a"}[beats_baseline(t)]
        lines.append(f"{name:<12} {t['kind']:<14} {t['n']:>4}  {metric:<9} {_f(t['metrics'].get(metric)):>10} "
                     f"{_f(t['baseline'].get(metric)):>10}  {verdict}")
        if t["kind"] != "regression":
            lines.append(f"{'':<12} {'':<14} {'':>4}  {'accuracy':<9} {_f(t['metrics'].get('accuracy')):>10} "
                         f"{_f(t['baseline'].get('accuracy')):>10}")
    return "\n".join(lines)


def markdown_report(summary: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The run's ``report.md``."""
    tasks = metrics["tasks"]
    out = [f"# Run report: {summary['plugin']}", ""]
    out += [f"- {k}: {v}" for k, v in summary.items()]
    out += ["", "## Classification (layout of the paper's Table 1)", ""] + (classification_table(tasks) or ["none"])
    out += ["", "## Regression (layout of the paper's Table 2)", "",
            "Errors in the target's units; `[0,1]` columns divide by the target's value range "
            "(MSE by its square).", ""] + (regression_table(tasks) or ["none"])
    out += ["", "## Labelled cases per task", "", "| task | train | val | test |", "|---|---|---|---|"]
    for name, counts in metrics.get("label_counts", {}).items():
        out.append(f"| {name} | {counts.get('train', 0)} | {counts.get('val', 0)} | {counts.get('test', 0)} |")
    return "\n".join(out) + "\n"
