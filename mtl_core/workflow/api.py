"""The Python API that goes the whole way: :func:`run` a configuration as ``mtl run`` does, and :func:`save_run` a
model trained with the library as a run folder that ``mtl predict`` (and :func:`~mtl_core.workflow.load_run`)
reads, with its report when the held-out outputs are given."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from ..config import ModelConfig, RunConfig, apply_overrides, load_config, validate_model
from ..data import Records, Split
from ..errors import MTLError
from ..evaluate import BOOTSTRAP_RESAMPLES, evaluate_outputs
from ..features import library_versions
from ..io import claim_output, write_csv, write_json, write_run_model
from ..model import MultiTaskModel
from ..report import console_table
from ..tasks import Task
from ..train import History
from .crossval import FoldResult, aggregate, decoded_predictions
from .pipeline import execute, write_report
from .predict import LoadedRun, load_run, prediction_frame, run_images
from .run import Fitted

log = logging.getLogger(__name__)

#: ``saved_by`` of the model.json that :func:`save_run` writes
SAVED_BY = "mtl_core.save_run"


@dataclass(frozen=True, eq=False)  # holds a DataFrame: compared by identity
class RunOutcome:
    """What :func:`run` gives back: the run folder and what the run measured.

    Attributes:
        folder: the run folder (``metrics.json``, ``predictions.csv``, ``report.md``/``report.html``, the model).
        metrics: ``metrics.json``'s contents: per-task ``metrics`` and ``baseline`` under ``tasks``, the protocol,
            the run summary, notes.
        predictions: the held-out predictions, one row per test case (``predictions.csv``).
        table: the per-task results table ``mtl run`` prints.
    """

    folder: Path
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    table: str

    @property
    def report(self) -> Path:
        """``report.html`` when the figure modules made it, else ``report.md``."""
        html = self.folder / "report.html"
        return html if html.is_file() else self.folder / "report.md"

    def load(self) -> LoadedRun:
        """The trained model, rebuilt from the run folder as ``mtl predict`` rebuilds it."""
        return load_run(self.folder)

    def predict(self, images: Iterable[str | Path]) -> pd.DataFrame:
        """Every task's prediction for image files: the frame of ``mtl predict --format csv`` (one row per image,
        one column per value; units in ``frame.attrs["units"]``)."""
        return predict(self.folder, images)


def predict(run_dir: str | Path | LoadedRun, images: Iterable[str | Path]) -> pd.DataFrame:
    """Predictions of a run folder (or a loaded run) for image files, one row per image and one column per value
    as ``mtl predict --format csv`` writes them; ``frame.attrs["units"]`` maps each column to its unit.

    Example:
        >>> frame = predict("runs/squares", ["a.png", "b.png"])  # doctest: +SKIP
        >>> frame[["image", "kind", "kind_prob", "size"]]  # doctest: +SKIP
    """
    loaded = run_dir if isinstance(run_dir, LoadedRun) else load_run(Path(run_dir))
    frame, units = prediction_frame(loaded, run_images(loaded, [Path(p) for p in images]))
    frame.attrs["units"] = units
    return frame


def run(config_or_dir: str | Path | RunConfig, data: str | Path | None = None, output: str | Path | None = None,
        overrides: Mapping[str, Any] | Iterable[str] | None = None, *, resume: bool = False,
        overwrite: bool = False, say: Callable[[str], None] | None = None,
        progress: Callable | None = None) -> RunOutcome:
    """Run a whole configuration from Python, exactly as ``mtl run`` does, and return what it measured.

    Args:
        config_or_dir: an example folder with ``config.yaml``, a config file, or a :class:`RunConfig`.
        data: the data folder (``--data``); default: the config's ``data.path``, else the plugin's synthetic data.
        output: the run folder to write (``--output``); default: the config's ``output``.
        overrides: config keys to change (``--set``): ``{"train.epochs": 5}`` or ``["train.epochs=5"]``.
        resume: continue an interrupted run from its checkpoints in ``output`` (``--resume``).
        overwrite: write into ``output`` even when it holds files that ``mtl run`` did not write (``--overwrite``);
            only a run's own files are replaced there (docs/cli.md, "The output folder").
        say: where the run's notes go (a fallback, random weights); default: this module's logger.
        progress: optional tqdm-like factory for progress bars.

    Raises:
        MTLError: any mistake in the configuration, the plugin options or the data, before anything is written;
            ``output`` not a folder of ``mtl run`` (without ``overwrite``), or in use by another run.

    Example:
        >>> import mtl_core
        >>> result = mtl_core.run("examples/shapes", output="runs/shapes",  # doctest: +SKIP
        ...                       overrides={"train.epochs": 5})
        >>> result.metrics["tasks"]["count"]["metrics"]["mae"], result.report  # doctest: +SKIP
    """
    config = _config(config_or_dir, _override_list(overrides))
    result = execute(config, data=None if data is None else Path(data), output=None if output is None else Path(output),
                     say=say or _log, progress=progress, resume=resume, overwrite=overwrite)
    predictions = result.predictions if result.predictions is not None else pd.DataFrame()
    return RunOutcome(Path(result.output), result.metrics, predictions, result.table)


def _log(message: str) -> None:
    (log.warning if message.startswith("WARNING") else log.info)(message)


def _override_list(overrides: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """``--set`` strings from a mapping (values written as YAML) or an iterable of ``key=value`` strings."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise MTLError(f"overrides must be a mapping or a list of 'key=value' strings, got the string {overrides!r}")
    return [str(item) for item in overrides]


def _config(target: str | Path | RunConfig, overrides: list[str]) -> RunConfig:
    if not isinstance(target, RunConfig):
        return load_config(Path(target), overrides)
    if not overrides:
        return target
    config = validate_model(RunConfig, apply_overrides(target.model_dump(mode="json"), overrides), "run() overrides")
    assert isinstance(config, RunConfig)
    return config


def save_run(folder: str | Path, model: MultiTaskModel, tasks: list[Task], *, image_size: int | None = None,
             plugin: str = "", history: History | None = None, outputs: Mapping[str, torch.Tensor] | None = None,
             targets: Mapping[str, np.ndarray] | None = None, ids: list[str] | None = None, seed: int = 0,
             overwrite: bool = False) -> Path:
    """Save a model trained with the library as a run folder that ``mtl predict`` and :func:`load_run` read.

    The folder gets ``model.json`` (the tasks with their fitted normalisation, the image size, the backbones with
    their weights' identity, the trunk and pooling settings) and ``model.safetensors`` (the trunk, the heads, the
    feature standardisation; the backbones' tensors too unless every backbone has pretrained weights that can
    be had again by name, which ``mtl predict`` then checks by checksum). With the held-out ``outputs`` and
    ``targets`` it also gets ``metrics.json``, ``predictions.csv``, ``report.md`` and ``report.html`` (with the
    learning curves when ``history`` is given), as ``mtl run`` writes them for one held-out split.

    Args:
        folder: the run folder to write: new, empty, or written by ``save_run`` before (its model, report and
            evaluation files are then replaced; other files, such as images, stay). Claimed as ``mtl run`` claims
            its output (:func:`~mtl_core.io.claim_output`): locked while it is written, never through a link.
        model: a :class:`MultiTaskModel` with its backbones attached (``model.fusion``): predicting reads images.
        tasks: its tasks, fitted on the training part (``Task.fit``), in the model's order.
        image_size: the side images are resized to; default: the backbones' input size.
        plugin: the plugin whose image reader ``mtl predict`` should use (e.g. for ``.IMG`` files); default: the
            core reader (PNG, JPEG, TIFF, DICOM).
        history: the training history (``Trainer.fit``'s return value), for ``history.json`` and the report.
        outputs: raw head outputs on the held-out cases (``Trainer.predict``), {task: (N, ...)}.
        targets: the held-out cases' raw targets {task: (N,) or (N, k)}, NaN where a label is missing.
        ids: the held-out cases' identifiers (default: their row numbers).
        seed: recorded in ``model.json``.
        overwrite: write into a folder that ``save_run`` did not write (a run of ``mtl run``, other files); only
            the files ``save_run`` writes are replaced there.

    Returns:
        The run folder.

    Raises:
        MTLError: the model has no backbones, the tasks do not match its heads, only one of ``outputs`` and
            ``targets`` is given, or ``folder`` holds files that ``save_run`` did not write (a run of ``mtl run``)
            and not ``overwrite``, is a file, or is in use.

    Example:
        >>> save_run("runs/squares", model, tasks, history=history,  # doctest: +SKIP
        ...          outputs=outputs, targets=test_targets)
    """
    fusion = getattr(model, "fusion", None)
    if fusion is None:
        raise MTLError("save_run needs the model's backbones: build the MultiTaskModel with its BackboneFusion "
                       "(mtl predict reads images, not cached features)")
    if [t.name for t in tasks] != list(model.heads):
        raise MTLError(f"the tasks given to save_run ({[t.name for t in tasks]}) are not the model's heads "
                       f"({list(model.heads)}): give the tasks the model was built with, in order")
    if (outputs is None) != (targets is None):
        raise MTLError("save_run needs both the held-out outputs and their targets for the report (or neither)")
    held_out = None if outputs is None or targets is None else _held_out(tasks, outputs, targets, ids)
    out = Path(folder)
    with claim_output(out, SAVED_BY, overwrite=overwrite):
        _write_saved(out, model, fusion.built() if hasattr(fusion, "built") else fusion, tasks, image_size, plugin,
                     history, held_out, seed)
    return out


def _write_saved(out: Path, model: MultiTaskModel, fusion: Any, tasks: list[Task], image_size: int | None,
                 plugin: str, history: History | None, held_out: _HeldOut | None, seed: int) -> None:
    """The files of :func:`save_run`, into the folder ``out`` it has claimed."""
    size = int(image_size or fusion.infos[0].input_size)
    state = dict(model.head_state_dict())
    if any(i.weights != "pretrained" for i in fusion.infos):  # random or file weights cannot be had again by name
        state.update({f"fusion.{k}": v for k, v in fusion.state_dict().items()})
    write_run_model(out, library_schema(model, fusion, tasks, size, plugin, seed), state)
    histories = [history.to_json()] if history is not None else []
    if histories:
        write_json(out / "history.json", {"trainings": histories, **histories[0]})
    if held_out is not None:
        _write_evaluation(out, model, tasks, history, held_out, plugin)


@dataclass(frozen=True, eq=False)  # holds tensors: compared by identity
class _HeldOut:
    outputs: dict[str, torch.Tensor]
    targets: dict[str, np.ndarray]
    ids: list[str]


def _held_out(tasks: list[Task], outputs: Mapping[str, torch.Tensor], targets: Mapping[str, np.ndarray],
              ids: list[str] | None) -> _HeldOut:
    """The held-out part given to save_run, checked before anything is written."""
    names = [t.name for t in tasks]
    n = len(outputs[names[0]]) if names[0] in outputs else -1
    case_ids = [str(i) for i in (ids if ids is not None else range(max(n, 0)))]
    arrays = {name: np.asarray(targets[name], np.float64) for name in names if name in targets}
    if (set(outputs) != set(names) or set(arrays) != set(names) or len(case_ids) != n
            or any(len(outputs[k]) != n or len(v) != n for k, v in arrays.items())):
        got = {k: len(v) for k, v in outputs.items()}, {k: len(v) for k, v in targets.items()}
        raise MTLError(f"save_run: the held-out part needs, for every task ({', '.join(names)}), its outputs and a "
                       f"target array of the same length (and as many ids); got outputs {got[0]}, targets "
                       f"{got[1]}{'' if ids is None else f', {len(case_ids)} ids'}")
    return _HeldOut({name: outputs[name] for name in names}, arrays, case_ids)


def library_schema(model: MultiTaskModel, fusion: Any, tasks: list[Task], image_size: int, plugin: str,
                   seed: int) -> dict[str, Any]:
    """``model.json`` of a model built with the library: the keys :func:`~mtl_core.workflow.pipeline.model_schema`
    writes for ``mtl run``, the model settings read back from the modules themselves (the trunk's as built)."""
    weights = {i.name: "pretrained" if i.weights == "pretrained" else "random" for i in fusion.infos}
    model_cfg = ModelConfig(backbones=[i.name for i in fusion.infos], weights=weights, on_missing_weights="error",
                            pooling=fusion.pooling, grid=fusion.grid, map_size=fusion.map_size,
                            map_levels=fusion.map_levels, share_heatmap=model.share_point_evidence,
                            frozen=fusion.frozen, standardize_features=True, trunk=model.trunk.settings)
    return {"plugin": plugin, "plugin_options": {}, "image_size": image_size, "seed": seed,
            "model": model_cfg.model_dump(), "backbones": fusion.describe(), "backbone_checksum": fusion.checksum(),
            "tasks": [t.describe() for t in tasks], "saved_by": SAVED_BY}


def _write_evaluation(out: Path, model: MultiTaskModel, tasks: list[Task], history: History | None,
                      held_out: _HeldOut, plugin: str) -> None:
    """metrics.json, predictions.csv and the report of the held-out cases, as ``mtl run`` writes them."""
    outputs, targets, ids, n = held_out.outputs, held_out.targets, held_out.ids, len(held_out.ids)
    records = Records(ids, [Path(i) for i in ids], targets)
    fitted = Fitted(model, history or History(), Split(np.array([], int), np.array([], int), np.arange(n)), outputs)
    fold = FoldResult(0, 0, fitted, evaluate_outputs(tasks, outputs, targets, bootstrap=BOOTSTRAP_RESAMPLES),
                      decoded_predictions(tasks, records, fitted))
    fusion = model.fusion
    metrics = {"tasks": aggregate(tasks, [fold]), "delta_m": None,
               "protocol": {"held_out_cases": n, "source": "trained with the library, saved by mtl_core.save_run"},
               "run": {"plugin": plugin or "library model (core image reader)", "cases": n,
                       "backbones": ", ".join(f"{i.name} ({i.weights})" for i in fusion.infos),
                       "weights": "RANDOM INITIALISATION" if fusion.uses_random_weights else "pretrained",
                       "weights_ids": {i.name: i.weights_id for i in fusion.infos}, "backbones_frozen": fusion.frozen,
                       "versions": library_versions() | {"python": platform.python_version()}},
               "notes": ["saved from the library: the protocol (split, early stopping) is the caller's"]}
    write_csv(out / "predictions.csv", fold.predictions)
    histories = [history.to_json()] if history is not None else []
    write_report(out, tasks, metrics, fold.predictions, histories)
    write_json(out / "metrics.json", metrics)  # last, as mtl run: its presence marks a finished run
    log.info("saved run %s:\n%s", out, console_table(metrics["tasks"]))
