"""Run results as Markdown tables in the layout of the paper's Tables 1 (classification) and 2 (regression).

An entry of metrics.json is shown by its kind's declarations (:mod:`mtl_core.tasks.base`): its ``section`` picks the
table (Table 1, Table 2, or a generic table of the kind's ``summary_metrics`` for a kind's own section), its
``summary_metrics`` the console and strata cells, its ``beats_metrics`` the verdict against the baseline. The point
kind's section is written here too: per task a table against the mean-point baseline with what a hit is, and its
localisation per stratum.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..evaluate import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from ..tasks import kind_class
from ..tasks.metrics import ECE_BINS

#: how a metric key is written in table headers (others are written as they are)
METRIC_LABELS = {"accuracy": "Acc", "balanced_accuracy": "Bal. Acc", "f1_macro": "F1", "f1_weighted": "F1 (weighted)",
                 "f1": "F1 (positive class)", "mse": "MSE", "mae": "MAE", "rmse": "RMSE", "mse_scaled": "MSE [0,1]",
                 "mae_scaled": "MAE [0,1]", "distance": "distance", "median_distance": "median distance",
                 "hit_rate": "hit rate", "mae_x": "MAE x", "mae_y": "MAE y", "mae_extent": "MAE extent",
                 "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "sensitivity": "Sens.", "specificity": "Spec.",
                 "ece": "ECE"}
_BUILT_IN_SECTIONS = ("classification", "regression")
#: every line break that str.splitlines() (and so report.html's reader) honours
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def markdown_text(value: Any) -> str:
    """``value`` as text on one Markdown line: each line break becomes a space, so that a name or a stratum value
    from the data cannot start a heading, a list item or a table row of its own."""
    return _LINE_BREAKS.sub(" ", str(value))


def markdown_cell(value: Any) -> str:
    r"""``value`` as the text of one Markdown table cell: on one line (:func:`markdown_text`), ``\`` and ``|``
    escaped, so that it stays one cell in any renderer and in report.html.

    Example:
        >>> print(markdown_cell("ward 7 | east" + chr(10) + "wing"))
        ward 7 \| east wing
    """
    return markdown_text(value).replace("\\", "\\\\").replace("|", "\\|")


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


def metric_label(key: str) -> str:
    """Header text of a metric key ("Acc", "MAE"), the key itself when it has none."""
    return METRIC_LABELS.get(key, key)


def section_of(entry: dict[str, Any]) -> str:
    """The report section of a metrics entry: its kind's ``section``, else the kind itself."""
    cls = kind_class(entry["kind"])
    return cls.section if cls is not None else entry["kind"]


def summary_metrics(entry: dict[str, Any]) -> tuple[str, ...]:
    """The metrics shown for an entry: its kind's ``summary_metrics`` (first = primary), else its first metric."""
    cls = kind_class(entry["kind"])
    return cls.summary_metrics if cls is not None else tuple(entry["metrics"])[:1]


def shown_metrics(entry: dict[str, Any]) -> tuple[str, ...]:
    """The summary metrics an entry has (a metrics.json from before ROC AUC was scored has none of it), all of
    them when it has none."""
    keys = summary_metrics(entry)
    return tuple(k for k in keys if k in entry["metrics"]) or keys


def cell(task: dict[str, Any], key: str, digits: int = 3) -> str:
    """``mean ± std`` when the task was measured over several trainings, else the value."""
    value = task["metrics"].get(key)
    std = task.get("metrics_std", {}).get(key)
    if std is None or len(task.get("folds", {}).get(key, [])) < 2:
        return _f(value, digits)
    return f"{_f(value, digits)} ± {_f(std, digits)}"


def _single(task: dict[str, Any], key: str, digits: int = 3) -> str:
    return _f(task["single_task"].get(key), digits) if task.get("single_task") else "n/a"


def _or_dash(task: dict[str, Any], key: str) -> str:
    return cell(task, key) if key in task["metrics"] else "–"


def classification_table(tasks: dict[str, Any]) -> list[str]:
    """Table 1 layout: per task accuracy, balanced accuracy and F1, beside the single-task model and the trivial
    baseline. A binary task's F1 of the positive class has its own column."""
    rows = ["| task | n | Acc | Bal. Acc | F1 (macro) | F1 (weighted) | F1 (positive class) | single-task Acc | "
            "single-task F1 | baseline Acc | baseline Bal. Acc | baseline F1 (macro) |", "|---" * 12 + "|"]
    for name, t in tasks.items():
        if section_of(t) != "classification":
            continue
        b = t["baseline"]
        rows.append(f"| {markdown_cell(name)} | {t['n']} | {cell(t, 'accuracy')} | "
                    f"{_or_dash(t, 'balanced_accuracy')} | {cell(t, 'f1_macro')} | {_or_dash(t, 'f1_weighted')} | "
                    f"{_or_dash(t, 'f1')} | {_single(t, 'accuracy')} | {_single(t, 'f1_macro')} | "
                    f"{_f(b.get('accuracy'))} | {_f(b.get('balanced_accuracy'))} | {_f(b.get('f1_macro'))} |")
    return rows if len(rows) > 2 else []


_SCORED = ("roc_auc", "pr_auc", "sensitivity", "specificity", "ece")


def _interval(task: dict[str, Any], key: str) -> str:
    """A metric with its bootstrap interval (``0.812 [0.710, 0.901]``), else as :func:`cell` writes it."""
    value = task["metrics"].get(key)
    if value is None or value != value:  # NaN in memory, null once read back from metrics.json
        return "n/a"
    low, high = task.get("bootstrap_ci95", {}).get(key, (None, None))
    if low is None or low != low:
        return cell(task, key)
    return f"{cell(task, key)} [{_f(low)}, {_f(high)}]"


def _threshold_text(task: dict[str, Any]) -> str:
    values = [v for v in _flat(task["threshold"]["values"]) if v is not None]
    if not values:
        return "n/a"
    return _f(values[0]) if len(values) == 1 else f"{_f(min(values))} to {_f(max(values))}"


def _flat(values: Any) -> list[Any]:
    """The thresholds of an entry, per training and per class (metrics.json) or per class (one evaluation)."""
    return [v for item in values for v in _flat(item)] if isinstance(values, list) else [values]


def scores_section(tasks: dict[str, Any]) -> list[str]:
    """ROC AUC, PR AUC, sensitivity and specificity at the threshold chosen on the validation part, and ECE of
    every entry with class probabilities (``"threshold"`` in its metrics entry), with what each means, the
    intervals and the reason of every n/a."""
    entries = {name: t for name, t in tasks.items() if "threshold" in t}
    if not entries:
        return []
    rule = next(iter(entries.values()))["threshold"]["rule"]
    chosen = ("Youden's J (largest sensitivity + specificity - 1)" if rule == "youden" else
              f"the highest threshold reaching a sensitivity of {rule.partition(':')[2]}")
    booted = any("bootstrap_ci95" in t for t in entries.values())
    spread = (f"[low, high]: bootstrap 95 % interval ({BOOTSTRAP_RESAMPLES} resamples of the held-out cases, seed "
              f"{BOOTSTRAP_SEED}, percentiles 2.5 and 97.5)" if booted else "± the standard deviation over trainings")
    out = ["", "## Ranking and calibration (class tasks)", "",
           markdown_text(f"On the held-out cases, from the class probabilities. ROC AUC and PR AUC (average "
                         f"precision) rank the cases by the probability of a class against the rest (a binary "
                         f"task: the positive class; a classification task: each class, then their unweighted "
                         f"mean). Sensitivity and specificity call a case positive when its probability reaches a "
                         f"threshold chosen on the validation part by {chosen} (`evaluation.threshold: {rule}`); a "
                         f"classification task has one per class, and the means are shown. ECE: expected "
                         f"calibration error of the predicted class's probability, {ECE_BINS} equal-width bins. "
                         f"{spread}. The baseline predicts the training class frequencies."), "",
           "| task | n | ROC AUC | PR AUC | Sens. | Spec. | ECE | threshold | baseline ROC AUC | baseline PR AUC | "
           "baseline ECE |", "|---" * 11 + "|"]
    for name, t in entries.items():
        b = t["baseline"]
        out.append(f"| {markdown_cell(name)} | {t['n']} | " + " | ".join(_interval(t, k) for k in _SCORED)
                   + f" | {_threshold_text(t)} | {_f(b.get('roc_auc'))} | {_f(b.get('pr_auc'))} | "
                     f"{_f(b.get('ece'))} |")
    notes = [f"- `{name}` {metric_label(k)}: n/a, {why}" for name, t in entries.items()
             for k, why in t.get("undefined", {}).items()]
    return out + (["", *map(markdown_text, notes)] if notes else [])


def regression_table(tasks: dict[str, Any]) -> list[str]:
    """Table 2 layout: MSE and MAE in units and scaled to [0, 1], beside the training-mean baseline."""
    rows = ["| target | unit | n | MSE | MAE | RMSE | MSE [0,1] | MAE [0,1] | single-task MAE | baseline MSE | "
            "baseline MAE |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        if section_of(t) != "regression":
            continue
        b = t["baseline"]
        rows.append(f"| {markdown_cell(name)} | {markdown_cell(t.get('unit', ''))} | {t['n']} | {cell(t, 'mse')} | "
                    f"{cell(t, 'mae')} | {cell(t, 'rmse')} | {cell(t, 'mse_scaled', 5)} | {cell(t, 'mae_scaled', 5)} | "
                    f"{_single(t, 'mae')} | {_f(b.get('mse'))} | {_f(b.get('mae'))} |")
    return rows if len(rows) > 2 else []


def section_table(tasks: dict[str, Any], section: str) -> list[str]:
    """A generic table for a kind's own section: n, then each summary metric of the model and of the baseline."""
    entries = {name: t for name, t in tasks.items() if section_of(t) == section}
    keys = list(dict.fromkeys(k for t in entries.values() for k in summary_metrics(t)))
    header = ["task", "unit", "n"] + [x for k in keys for x in (metric_label(k), f"baseline {metric_label(k)}")]
    rows = ["| " + " | ".join(header + ["beats baseline"]) + " |", "|---" * (len(header) + 1) + "|"]
    verdicts = {True: "yes", False: "NO", None: "n/a"}
    for name, t in entries.items():
        cells = [markdown_cell(name), markdown_cell(t.get("unit", "")), str(t["n"])]
        cells += [x for k in keys for x in (cell(t, k), _f(t["baseline"].get(k)))]
        rows.append("| " + " | ".join(cells + [verdicts[beats_baseline(t)]]) + " |")
    return rows if entries else []


def _better(model: Any, baseline: Any, higher: bool) -> bool | None:
    if not isinstance(model, int | float) or not isinstance(baseline, int | float) or model != model \
            or baseline != baseline:  # None or NaN: undefined
        return None
    return model > baseline if higher else model < baseline


def beats_baseline(task: dict[str, Any]) -> bool | None:
    """Whether every one of the kind's ``beats_metrics`` beats the trivial baseline (classification: macro-F1
    and balanced accuracy; regression: MAE); None when one is undefined or the kind is unknown."""
    cls = kind_class(task["kind"])
    if cls is None:
        return None
    m, b = task["metrics"], task["baseline"]
    verdicts = [_better(m.get(k), b.get(k), cls.higher_is_better[k]) for k in cls.beats_metrics]
    return None if None in verdicts else all(verdicts)


def console_table(tasks: dict[str, Any]) -> str:
    """A plain-text results table for the terminal: a line per summary metric, the verdict on the first."""
    shown = {name: shown_metrics(t) for name, t in tasks.items()}
    width = max([9] + [len(k) for keys in shown.values() for k in keys])
    lines = [f"{'task':<12} {'kind':<14} {'n':>4}  {'metric':<{width}} {'model':>16} {'baseline':>10}  beats"]
    for name, t in tasks.items():
        for i, metric in enumerate(shown[name]):
            head = f"{name:<12} {t['kind']:<14} {t['n']:>4}" if i == 0 else f"{'':<12} {'':<14} {'':>4}"
            verdict = "  " + {True: "yes", False: "NO", None: "n/a"}[beats_baseline(t)] if i == 0 else ""
            lines.append(f"{head}  {metric:<{width}} {cell(t, metric):>16} {_f(t['baseline'].get(metric)):>10}"
                         f"{verdict}".rstrip())
    return "\n".join(lines)


def strata_tables(strata: dict[str, Any], tasks: dict[str, Any]) -> list[str]:
    """The paper's Tables 3/4 for every stratum: each entry's summary metrics per stratum value, with its count;
    then, for each point task, its localisation per stratum value (:func:`localisation_by_stratum`)."""
    points = [name for name, t in tasks.items() if section_of(t) == "point"]
    shown = {name: t for name, t in tasks.items() if name not in points and t.get("part_of") not in points}
    out: list[str] = []
    for name, values in strata.items():
        out += ["", markdown_text(f"### By {name}")]
        if shown:
            out += _strata_table(values, shown)
        for point in points:
            out += localisation_by_stratum(name, values, point, tasks)
    return out


def _strata_table(values: dict[str, Any], tasks: dict[str, Any]) -> list[str]:
    keys = {t: _stratum_keys(t, e, values) for t, e in tasks.items()}
    header = ["value"] + [markdown_cell(f"{t} ({' / '.join(metric_label(k) for k in keys[t])})") for t in tasks]
    out = ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for value, per_task in values.items():
        cells = [markdown_cell(value)]
        for t in tasks:
            found = per_task.get(t, {"n": 0})
            if found["n"] == 0:
                cells.append("–")
                continue
            shown = " / ".join(_f(found["metrics"].get(k)) for k in keys[t])
            cells.append(f"{shown} (n={found['n']})")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _stratum_keys(name: str, entry: dict[str, Any], values: dict[str, Any]) -> tuple[str, ...]:
    """The summary metrics a stratum table has for an entry: those scored per stratum (not ROC AUC, which needs
    the probabilities)."""
    scored = {k for per_task in values.values() for k in per_task.get(name, {}).get("metrics", {})}
    return tuple(k for k in summary_metrics(entry) if k in scored) or summary_metrics(entry)


# -- point tasks -------------------------------------------------------------------------------------------------

_POINT_ROWS = ("distance", "median_distance", "hit_rate", "mae_x", "mae_y", "mae_extent")


def _extent(name: str, tasks: dict[str, Any]) -> tuple[list[str], str, str]:
    """A point task's axis names, extent name and extent unit, from its component entries (x, y, then the
    extent); generic names where it has none."""
    parts = [(part, e.get("unit", "")) for part, e in tasks.items() if e.get("part_of") == name]
    extent, unit = parts[2] if len(parts) > 2 else ("extent", "")
    return [p for p, _ in parts[:2]] or ["x", "y"], extent, unit


def _point_labels(name: str, tasks: dict[str, Any]) -> dict[str, str]:
    """Row labels of a point task's metrics, with units."""
    unit = tasks[name].get("unit", "")
    axes, extent, extent_unit = _extent(name, tasks)
    return {"distance": _with("distance", unit), "median_distance": _with("median distance", unit),
            "hit_rate": "hit rate", "mae_x": _with(f"MAE {axes[0]}", unit), "mae_y": _with(f"MAE {axes[-1]}", unit),
            "mae_extent": _with(f"MAE {extent}", extent_unit)}


def _with(text: str, unit: str) -> str:
    return f"{text} ({unit})" if unit else text


def _hit_sentence(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ("A hit is a predicted point within one true extent of the true point when the task has an extent "
                "scale, else within its hit radius.")
    unit, extent = schema.get("unit", ""), schema.get("extent")
    if extent and schema.get("extent_scale"):
        return (f"A hit is a predicted point within one true {extent} (a diameter; {schema['extent_scale']:.3g} "
                f"{unit} per {schema.get('extent_unit') or 'unit'}) of the true point.")
    width, height = schema["frame"]
    radius = schema.get("hit_radius")
    why = "its `hit_radius`" if radius is not None else "5 % of the frame's diagonal, as no `hit_radius` is set"
    radius = radius if radius is not None else 0.05 * math.hypot(width, height)
    return f"A hit is a predicted point within {_f(float(radius))} {unit} of the true point ({why})."


def _point_intro(name: str, tasks: dict[str, Any], schema: dict[str, Any] | None) -> str:
    entry = tasks[name]
    unit = entry.get("unit", "") or "units"
    where = (f"the {schema['frame'][0]:g} x {schema['frame'][1]:g} frame" if schema else "the task's frame")
    extent = _extent(name, tasks)[1]
    verdict = {True: "yes", False: "NO", None: "n/a"}[beats_baseline(entry)]
    return (f"`{name}`: {entry['n']} test cases with a point. Coordinates are {unit} in {where} (origin top left, x "
            f"to the right, y down); distance is the Euclidean distance from the predicted to the true point. "
            f"{_hit_sentence(schema)} The baseline predicts the mean training point"
            f"{f' (and the mean {extent})' if 'mae_extent' in entry['metrics'] else ''} for every case. Beats the "
            f"baseline on distance: {verdict}.")


def point_table(name: str, tasks: dict[str, Any]) -> list[str]:
    """A point task's metrics, a row each, beside the mean-point baseline."""
    entry, labels = tasks[name], _point_labels(name, tasks)
    cls = kind_class(entry["kind"])
    rows = ["| metric | model | mean-point baseline | better than the baseline |", "|---|---|---|---|"]
    for key in _POINT_ROWS:
        if key not in entry["metrics"]:
            continue
        higher = cls.higher_is_better.get(key, False) if cls is not None else key == "hit_rate"
        better = {True: "yes", False: "no", None: "n/a"}[_better(entry["metrics"][key], entry["baseline"].get(key),
                                                                 higher)]
        rows.append(f"| {markdown_cell(labels[key])} | {cell(entry, key)} | {_f(entry['baseline'].get(key))} | "
                    f"{better} |")
    return rows


def _share_sentence(summary: dict[str, Any]) -> list[str]:
    share = summary.get("share_heatmap")
    if share is None:
        return []
    if share:
        return ["", "Classification from the map (`model.share_heatmap`): on. The global heads also read each point "
                    "head's heatmap peak (its largest logit and log-sum-exp); whether that helps needs a run with it "
                    "off on the same split."]
    return ["", "Classification from the map (`model.share_heatmap`): off. The global heads read the pooled feature "
                "maps only; `--set model.share_heatmap=true` lets them read each point head's heatmap peak too."]


def localisation_section(tasks: dict[str, Any], schemas: dict[str, dict[str, Any]],
                         summary: dict[str, Any]) -> list[str]:
    """The point kind's report section: per point task what its numbers mean, then its table."""
    out = ["", "## Localisation (point tasks)"]
    for name, entry in tasks.items():
        if section_of(entry) == "point":
            out += ["", markdown_text(_point_intro(name, tasks, schemas.get(name))), "",
                    *point_table(name, tasks)]
    return out + _share_sentence(summary)


def localisation_by_stratum(stratum: str, values: dict[str, Any], name: str, tasks: dict[str, Any]) -> list[str]:
    """A point task's metrics per value of a stratum (values where it has no point left out)."""
    labels = _point_labels(name, tasks)
    keys = [k for k in _POINT_ROWS if k in tasks[name]["metrics"]]
    rows = [f"| {markdown_cell(stratum)} | n | " + " | ".join(markdown_cell(labels[k]) for k in keys) + " |",
            "|---" * (len(keys) + 2) + "|"]
    for value, per_task in values.items():
        found = per_task.get(name, {"n": 0})
        if found["n"]:
            rows.append(f"| {markdown_cell(value)} | {found['n']} | "
                        + " | ".join(_f(found["metrics"].get(k)) for k in keys) + " |")
    return ["", markdown_text(f"Localisation of `{name}` by {stratum}:"), "", *rows] if len(rows) > 2 else []


def _components_note(tasks: dict[str, Any]) -> list[str]:
    parents = dict.fromkeys(e["part_of"] for e in tasks.values() if e.get("part_of") and section_of(e) ==
                            "regression")
    notes = [f"{', '.join(f'`{n}`' for n, e in tasks.items() if e.get('part_of') == p)} are components of "
             f"`{p}` (its decoded values), scored like regression tasks so that they compare with runs that "
             f"predict them as separate regression tasks." for p in parents]
    return ["", *map(markdown_text, notes)] if notes else []


def _sections(tasks: dict[str, Any], schemas: dict[str, dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """Table 1, Table 2, the point tasks' section, then a generic table for every other section, in the order
    entries name them."""
    out = ["", "## Classification (layout of the paper's Table 1)", ""] + (classification_table(tasks) or ["none"])
    out += scores_section(tasks)
    out += ["", "## Regression (layout of the paper's Table 2)", "",
            "Errors in the target's units; `[0,1]` columns divide by the target's value range "
            "(MSE by its square).", ""] + (regression_table(tasks) or ["none"]) + _components_note(tasks)
    others = dict.fromkeys(s for s in map(section_of, tasks.values()) if s not in _BUILT_IN_SECTIONS)
    for section in others:
        if section == "point":
            out += localisation_section(tasks, schemas, summary)
        else:
            title = markdown_text(f"## {section.replace('_', ' ').capitalize()}")
            out += ["", title, ""] + section_table(tasks, section)
    return out


def markdown_report(summary: dict[str, Any], metrics: dict[str, Any],
                    schemas: list[dict[str, Any]] | None = None) -> str:
    """The run's ``report.md``.

    Args:
        summary: the run summary (``metrics.json``'s ``run``), listed first.
        metrics: ``metrics.json``'s contents.
        schemas: the tasks' ``describe()`` (model.json's ``tasks``), for what only they know: a point task's
            frame and what counts as a hit.
    """
    tasks = metrics["tasks"]
    protocol = metrics.get("protocol", {})
    out = [markdown_text(f"# Run report: {summary['plugin']}"), "", "## Configuration and provenance", ""]
    out += [markdown_text(f"- {k}: {v}") for k, v in summary.items()]
    out += [markdown_text(f"- protocol: {k}: {v}") for k, v in protocol.items()]
    out += [markdown_text(f"- note: {n}") for n in metrics.get("notes", [])]
    dm = metrics.get("delta_m")
    out += ["", f"Multi-task gain Delta_m over single-task models: {_f(dm, 2)} %" if dm is not None else
            "Multi-task gain Delta_m: not computed (single-task baselines off)"]
    out += _sections(tasks, {s["name"]: s for s in schemas or []}, summary)
    if metrics.get("strata"):
        out += ["", "## Breakdowns by stratum (layout of the paper's Tables 3 and 4)", "",
                "Out-of-fold predictions of the first repeat; n is the number of labelled cases in the cell."]
        out += strata_tables(metrics["strata"], tasks)
    out += ["", "## Labelled cases per task (first split)", "", "| task | train | val | test |", "|---|---|---|---|"]
    for name, counts in metrics.get("label_counts", {}).items():
        out.append(f"| {markdown_cell(name)} | {counts.get('train', 0)} | {counts.get('val', 0)} | "
                   f"{counts.get('test', 0)} |")
    return "\n".join(out) + "\n"
