"""``mtl compare``: the same multi-task setup over several backbone sets and ablations (the paper's Tables 1/2
for any data set)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import RunConfig, load_config
from ..errors import ConfigError, WeightsError
from ..features import backbone_source, pretrained_available
from ..io import atomic_write, claim_output, refuse_link, write_csv
from ..model import ARCHITECTURES
from ..plugins import load_plugin
from ..registry import suggest
from ..report import cell, markdown_cell, metric_label, section_of, shown_metrics
from ..train import WEIGHTINGS
from .checks import build_tasks
from .pipeline import execute

#: the writer ``mtl compare`` records in the marker of its output folder (io/output_folder.py)
COMPARE_WRITER = "mtl compare"

#: ablation name -> what it switches off
ABLATIONS = {
    "none": "the configuration as it is",
    "no_residual": "no residual connections in the shared trunk",
    "no_label_smoothing": "label smoothing 0 on every task that has it (classification)",
    "equal_weights": "every task's loss weighted 1",
}


@dataclass
class Variant:
    """One row of a comparison: a backbone set, an ablation (or ``--variant``), and, with ``--weightings`` /
    ``--architectures``, a loss strategy or gradient method and a sharing architecture (None: the config's)."""

    backbones: list[str]
    ablation: str
    weighting: str | None = None
    architecture: str | None = None

    @property
    def slug(self) -> str:
        """Folder name of its run."""
        name = "+".join(self.backbones) + ("" if self.ablation == "none" else f"__{self.ablation}")
        name += "".join(f"__{v}" for v in (self.weighting, self.architecture) if v)
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)

    def overrides(self) -> list[str]:
        """The ``--set`` items of its weighting and architecture."""
        return ([f"loss.strategy={self.weighting}"] if self.weighting else []) + \
            ([f"model.trunk.architecture={self.architecture}"] if self.architecture else [])


def parse_names(spec: str | None, choices: list[str], flag: str, what: str) -> list[str | None]:
    """``"static;pcgrad"`` (``;`` or ``,`` between names) -> ``["static", "pcgrad"]``, each checked against
    ``choices`` ("did you mean"); no ``spec``: ``[None]`` (the config's own)."""
    if spec is None:
        return [None]
    names = list(dict.fromkeys(n.strip() for n in re.split(r"[;,]", spec) if n.strip()))
    if not names:
        raise ConfigError(f"{flag} {spec!r} names nothing; separate names with ';', e.g. 'static;pcgrad'")
    for name in names:
        if name not in choices:
            raise ConfigError(suggest(name, choices, what))
    return list(names)


def parse_backbones(spec: str) -> list[list[str]]:
    """``"resnet18;densenet161+efficientnet_b7"`` -> ``[["resnet18"], ["densenet161", "efficientnet_b7"]]``."""
    sets = [[b.strip() for b in part.split("+") if b.strip()] for part in spec.split(";") if part.strip()]
    if not sets or not all(sets):  # "a;+" would train row a in full and only then stop at the empty set
        raise ConfigError(f"--backbones {spec!r} names no backbone in a set; separate sets with ';' and fuse with '+'")
    return sets


def parse_ablations(spec: str | None) -> list[str]:
    """Comma-separated ablation names (``none`` is always first)."""
    given = [a.strip() for a in (spec or "").split(",") if a.strip() and a.strip() != "none"]
    names = ["none", *dict.fromkeys(given)]  # a name given twice is one row, not two runs into one folder
    for name in names:
        if name not in ABLATIONS:
            raise ConfigError(suggest(name, list(ABLATIONS), "ablation"))
    return names


def parse_variants(specs: list[str] | None) -> dict[str, list[str]]:
    """``--variant NAME:KEY=VALUE`` (repeatable; the same NAME again adds an override): named rows of settings,
    e.g. ``regression_heads:plugin_options.localisation=regression``, beside the built-in ablations."""
    variants: dict[str, list[str]] = {}
    for spec in specs or []:
        name, sep, override = spec.partition(":")
        name = name.strip()
        if not sep or not name or "=" not in override or not re.fullmatch(r"[a-z0-9_]+", name):
            raise ConfigError(f"--variant {spec!r} is not NAME:KEY=VALUE with a snake_case name, e.g. "
                              f"regression_heads:plugin_options.localisation=regression")
        if name in ABLATIONS:
            raise ConfigError(f"--variant {name!r} is a built-in ablation; choose another name")
        variants.setdefault(name, []).append(override.strip())
    return variants


def ablation_overrides(name: str, config: RunConfig, smoothed: list[str]) -> list[str]:
    """Dotted overrides that switch one ingredient off; ``smoothed``: the tasks that have label smoothing."""
    if name == "no_residual":
        return ["model.trunk.residual=false"] + (["fallback.trunk.residual=false"]
                                                 if config.fallback and config.fallback.trunk else [])
    if name == "no_label_smoothing":
        return [f"tasks.{t}.label_smoothing=0" for t in smoothed]
    if name == "equal_weights":
        return ["loss.strategy=equal"]
    return []


def check_backbones(sets: list[list[str]], allow_random: bool) -> None:
    """Every name must exist; without ``allow_random`` every backbone needs pretrained weights on this machine."""
    names = sorted({n for s in sets for n in s})
    for name in names:
        backbone_source(name)  # unknown names fail with suggestions
    missing = [n for n in names if not allow_random and not pretrained_available(n)]
    if missing:
        raise WeightsError(f"no pretrained weights on this machine for {', '.join(missing)}: put <name>.safetensors "
                           f"in $MTL_WEIGHTS_DIR, or pass --allow-random to compare randomly initialised backbones")


def _columns(entry: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """(metric, digits) per column of an entry: MSE and MAE scaled and in units for the regression section,
    else its kind's summary metrics."""
    if section_of(entry) == "regression":
        return ("mse_scaled", 5), ("mae_scaled", 5), ("mae", 3)
    return tuple((k, 3) for k in shown_metrics(entry))


def _row(variant: Variant, metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"backbones": "+".join(variant.backbones), "ablation": variant.ablation}
    row |= {k: v for k, v in (("weighting", variant.weighting), ("architecture", variant.architecture)) if v}
    for name, t in metrics["tasks"].items():
        keys = ("mse", "mae", "mse_scaled", "mae_scaled") if section_of(t) == "regression" else shown_metrics(t)
        for key in keys:
            row[f"{name}_{key}"] = t["metrics"].get(key)
            low, high = t.get("metrics_ci95", {}).get(key, [None, None])
            row[f"{name}_{key}_ci95_low"], row[f"{name}_{key}_ci95_high"] = low, high
    row["delta_m"] = metrics.get("delta_m")
    row["wall_time_s"] = metrics["run"]["wall_time_s"]
    row["weights"] = metrics["run"]["weights"]
    return row


def markdown_table(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """compare.md: one row per variant, a column group per metrics entry, ``mean ± std`` cells, then Delta_m
    against the single-task models (when the runs computed it) and the row's wall time."""
    tasks: dict[str, Any] = {}
    for metrics in results:  # every entry any row reports, in order of first appearance
        tasks.update({k: v for k, v in metrics["tasks"].items() if k not in tasks})
    labels = [k for k in ("backbones", "ablation", "weighting", "architecture") if rows and k in rows[0]]
    header = list(labels)
    for name, t in tasks.items():
        header += [f"{name} {metric_label(k)}" + (f" ({t.get('unit', '')})" if k == "mae" else "")
                   for k, _ in _columns(t)]
    header += ["Delta_m (%)", "wall (s)"]
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    for row, metrics in zip(rows, results, strict=True):
        cells = [markdown_cell(row[k]) for k in labels]  # a variant's name is the user's
        for name, t in tasks.items():
            own = metrics["tasks"].get(name)
            cells += [cell(own, k, d) if own is not None else "–" for k, d in _columns(t)]
        delta, wall = row.get("delta_m"), row.get("wall_time_s")
        cells += [f"{delta:+.2f}" if isinstance(delta, float) else "–", f"{wall:.0f}" if wall is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "# Comparison\n\n" + "\n".join(lines) + "\n"


def compare(target: Path, backbones: str, *, ablations: str | None = None, data: Path | None = None,
            output: Path, overrides: list[str] | None = None, allow_random: bool = False,
            say: Callable[[str], None] = print, progress: Callable | None = None,
            variants: list[str] | None = None, overwrite: bool = False, weightings: str | None = None,
            architectures: str | None = None) -> pd.DataFrame:
    """Run every (backbone set, ablation or ``--variant``, weighting, architecture) row into ``output/<row>/`` and
    write compare.csv / .md. Rows whose runs report other entries (a variant with other tasks) leave the cells
    they lack empty. ``weightings`` / ``architectures``: names separated by ``;`` (``--weightings``,
    ``--architectures``), each a row beside every ablation; None keeps the config's.

    ``output`` is claimed as ``mtl compare``'s (:func:`~mtl_core.io.claim_output`) and each row folder as a run
    folder of ``mtl run``; ``overwrite`` lets both write where other files are (replacing only their own)."""
    sets, names, named = parse_backbones(backbones), parse_ablations(ablations), parse_variants(variants)
    names += list(named)
    methods = parse_names(weightings, WEIGHTINGS.names(), "--weightings", "weighting strategy")
    shapes = parse_names(architectures, ARCHITECTURES.names(), "--architectures", "sharing architecture")
    rows = [Variant(b, a, w, s) for b in sets for a in names for w in methods for s in shapes]
    base = load_config(target, overrides or [])
    check_backbones(sets, allow_random)
    smoothed = [t.name for t in build_tasks(load_plugin(base.plugin, base.plugin_options), base)
                if hasattr(t, "label_smoothing")]
    with claim_output(Path(output), COMPARE_WRITER, overwrite=overwrite):
        return _compare_rows(target, rows, named, base, smoothed, data=data, output=Path(output),
                             overrides=overrides or [], say=say, progress=progress, overwrite=overwrite)


def _compare_rows(target: Path, variants: list[Variant], named: dict[str, list[str]], base: RunConfig,
                  smoothed: list[str], *, data: Path | None, output: Path, overrides: list[str],
                  say: Callable[[str], None], progress: Callable | None, overwrite: bool) -> pd.DataFrame:
    """Every row of :func:`compare` into its folder of the claimed ``output``, then compare.csv and compare.md.
    With frozen backbones every row reads the same feature cache: a row costs a training, not an extraction."""
    rows, results = [], []
    for variant in variants:
        say(f"== {variant.slug}")
        start = time.perf_counter()
        config = load_config(target, overrides + [f"model.backbones=[{','.join(variant.backbones)}]", "fallback=null"]
                             + variant.overrides()
                             + (named.get(variant.ablation) or ablation_overrides(variant.ablation, base, smoothed)))
        refuse_link(output / variant.slug)  # a row folder is written into: never through a link
        result = execute(config, data=data, output=output / variant.slug, say=say, progress=progress,
                         overwrite=overwrite)
        rows.append(_row(variant, result.metrics) | {"wall_time_s": round(time.perf_counter() - start, 1)})
        results.append(result.metrics)
    frame = pd.DataFrame(rows)
    write_csv(output / "compare.csv", frame)
    atomic_write(output / "compare.md", markdown_table(rows, results))  # last: it marks a finished comparison
    return frame
