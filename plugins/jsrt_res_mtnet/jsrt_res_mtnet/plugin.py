"""The Res-MTNet tasks on JSRT: four classification and three regression tasks (the paper's eq. 6-8).

Non-nodule images carry no subtlety, position, diagnosis, x, y or size: those labels are missing (masked), never
zero. See the example folder's README for every choice the paper leaves open.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from mtl_core import (
    BinaryTask,
    ClassificationTask,
    ConfigError,
    DataError,
    LabelSmoothing,
    Plugin,
    PointTask,
    Records,
    RegressionTask,
    Strict,
    Task,
    core_reader_id,
    validate_model,
)

from .layout import find_layout, list_images, resolve_image
from .metadata import DIAGNOSIS_GROUPS, FRAME_SIZE, LOBES, STATES, read_metadata
from .phantom_grid import FRAME_MM_PER_PX
from .raw_img import register_img_reader

log = logging.getLogger(__name__)
SUBTLETY_CLASSES = ["1 extremely subtle", "2 very subtle", "3 subtle", "4 relatively obvious", "5 obvious"]
SIZE_BINS = (10.0, 20.0, 30.0)  # mm: <10, 10-20, 20-30, >=30 (the paper's Tables 3/4)
SIZE_STRATA = ["<10 mm", "10-20 mm", "20-30 mm", ">=30 mm"]


class PhantomOptions(Strict):
    """Synthetic phantom used when no data folder is given."""

    size: int = Field(256, ge=32, le=2048, description="image side in pixels")
    bit_depth: Literal[8, 16] = 8
    nested: bool = Field(False, description="images in images/images/ instead of images/")
    seed: int = 0
    metadata: Path | None = Field(None, description="a JSRT metadata CSV whose rows the phantom reproduces")


class JSRTOptions(Strict):
    """Options of the JSRT plugin."""

    state: Literal["three_class", "presence_malignancy"] = Field(
        "three_class", description="one 3-class task, or a 'nodule' BCE task plus a 'malignant' BCE task")
    position: Literal["lobe", "raw"] = Field("lobe", description="five lobes, or the raw position strings")
    diagnosis: Literal["grouped", "raw"] = Field("grouped", description="diagnosis groups, or raw spellings")
    localisation: Literal["point", "regression"] = Field(
        "point", description="the nodule as one point task with its size (a heatmap over feature maps; needs "
                             "model.pooling 'map'), or the paper's three scalar regression heads x, y, size")
    label_smoothing: LabelSmoothing = Field(0.1, description="epsilon of eq. 6 for every class task")
    weights: dict[str, float] = Field(default_factory=dict, description="loss weight per task (default 1)")
    phantom: PhantomOptions = Field(default_factory=PhantomOptions)


def _codes(values: pd.Series, classes: list[str], column: str, source: Path) -> np.ndarray:
    """Class index per row (NaN where the value is missing); an unknown value is a DataError."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.full(len(values), np.nan)
    for row, value in enumerate(values):
        if isinstance(value, str):
            if value not in lookup:
                raise DataError(f"{source}: row {row + 2}, column {column!r}: unknown value {value!r}; expected one "
                                f"of {', '.join(classes)}")
            out[row] = lookup[value]
    return out


class JSRTPlugin(Plugin):
    """JSRT chest radiographs with nodule annotations (247 images: 154 nodules, 93 non-nodules)."""

    name = "jsrt_res_mtnet"
    Options = JSRTOptions
    stratify_key = "state"
    # No flips: a left/right flip moves a nodule to the other lung (its "position" lobe label), an up/down flip
    # gives an anatomy no radiograph shows. No zoom: the nodule's size in mm is read from its size in pixels.
    # Small rotations and shifts move the nodule's location target with the image; intensity changes mimic
    # exposure and film differences.
    label_safe_transforms = ("rotate", "translate", "intensity", "contrast", "noise")

    def __init__(self, options: JSRTOptions | None = None) -> None:
        super().__init__(options)
        register_img_reader()
        self._raw_classes: dict[str, list[str]] = {}
        self._suffixes: set[str] = set()  # of the image files read, for reader_id()

    def _classification(self, name: str, classes: list[str]) -> ClassificationTask:
        return ClassificationTask(name, classes=classes, label_smoothing=self.options.label_smoothing,
                                  weight=self.options.weights.get(name, 1.0))

    def _regression(self, name: str, unit: str, bounds: tuple[float, float | None]) -> RegressionTask:
        span = None if bounds[1] is None else bounds[1] - bounds[0]  # errors scaled to [0, 1] as in Table 2
        return RegressionTask(name, unit=unit, loss_name="mse", value_range=span, bounds=bounds,
                              weight=self.options.weights.get(name, 1.0))

    def tasks(self) -> list[Task]:
        """subtlety, state (or nodule + malignant), position, diagnosis; the nodule's location (x, y in px of the
        2048 frame) with its size (mm) as one point task, or x, y, size as three regression tasks."""
        o = self.options
        tasks: list[Task] = [self._classification("subtlety", SUBTLETY_CLASSES)]
        if o.state == "three_class":
            tasks.append(self._classification("state", list(STATES)))
        else:
            tasks += [BinaryTask("nodule", classes=["no nodule", "nodule"], weight=o.weights.get("nodule", 1.0)),
                      BinaryTask("malignant", classes=["benign", "malignant"], weight=o.weights.get("malignant", 1.0))]
        tasks.append(self._classification("position", self._raw_classes.get("position") or list(LOBES)))
        tasks.append(self._classification("diagnosis", self._raw_classes.get("diagnosis") or
                                          [g for g in DIAGNOSIS_GROUPS if g != "other"]))
        if o.localisation == "point":
            tasks.append(PointTask("location", weight=o.weights.get("location", 1.0), unit="px",
                                   frame=(FRAME_SIZE, FRAME_SIZE), axes=("x", "y"), extent="size", extent_unit="mm",
                                   extent_scale=1.0 / FRAME_MM_PER_PX))
        else:
            frame = (0.0, float(FRAME_SIZE))
            tasks += [self._regression("x", "px", frame), self._regression("y", "px", frame),
                      self._regression("size", "mm", (0.0, None))]
        unknown = sorted(set(o.weights) - {t.name for t in tasks})
        if unknown:
            raise ConfigError(f"plugin_options.weights: unknown task {unknown[0]!r}; tasks are "
                            f"{', '.join(t.name for t in tasks)}")
        return tasks

    def load_records(self, data_dir: Path) -> Records:
        """Read a JSRT folder (Kaggle PNG/JPEG layout or the original .IMG files) into records."""
        layout = find_layout(data_dir)
        table = read_metadata(layout.metadata_csv)
        paths = [resolve_image(layout, sid) for sid in table["study_id"]]
        self._suffixes = {path.suffix for path in paths}
        unlisted = len(set(list_images(layout)) - set(paths))
        if unlisted:
            log.warning("%d image(s) in %s are not listed in %s: ignored", unlisted, layout.image_dir,
                        layout.metadata_csv.name)
        nodule = table["state"].isin(["benign", "malignant"]).to_numpy()
        if self.options.position == "raw":
            self._raw_classes["position"] = sorted(table.loc[nodule, "position"].dropna().unique())
        if self.options.diagnosis == "raw":
            self._raw_classes["diagnosis"] = sorted(table.loc[nodule, "diagnosis"].dropna().unique())
        return Records(ids=list(table["study_id"]), paths=paths, targets=self._targets(table, nodule, layout),
                       strata=self._strata(table))

    def reader_id(self) -> str:
        """PNG, JPEG or DICOM copies are read by the core reader: its identity, so that the same images read by
        the generic ``table`` plugin (examples/jsrt_table) share the cached features. ``.IMG`` files are read by
        this plugin's reader, and the default identity (with this plugin's version) stays."""
        return core_reader_id(self._suffixes) or super().reader_id()

    def _targets(self, table: pd.DataFrame, nodule: np.ndarray, layout) -> dict[str, np.ndarray]:
        src = layout.metadata_csv

        def only_nodules(values: np.ndarray) -> np.ndarray:
            return np.where(nodule, values, np.nan)

        out = {"subtlety": only_nodules(table["subtlety"].to_numpy(float) - 1)}
        if self.options.state == "three_class":
            out["state"] = _codes(table["state"], list(STATES), "state", src)
        else:
            out["nodule"] = nodule.astype(float)
            out["malignant"] = only_nodules((table["state"] == "malignant").to_numpy(float))
        position_col, position_classes = ("position", self._raw_classes.get("position")) \
            if self.options.position == "raw" else ("lobe", list(LOBES))
        out["position"] = only_nodules(_codes(table[position_col].where(nodule), position_classes, "position", src))
        diag_col, diag_classes = ("diagnosis", self._raw_classes.get("diagnosis")) \
            if self.options.diagnosis == "raw" else ("diagnosis_group", list(DIAGNOSIS_GROUPS))
        diag = table[diag_col].where(nodule & (table[diag_col] != "other"))
        out["diagnosis"] = only_nodules(_codes(diag, diag_classes, "diagnosis", src))
        xy_size = np.stack([only_nodules(table[c].to_numpy(float)) for c in ("x", "y", "size")], axis=1)
        if self.options.localisation == "point":
            out["location"] = xy_size  # (N, 3); non-nodule images have no point: negatives for the heatmap
        else:
            out.update({c: xy_size[:, i] for i, c in enumerate(("x", "y", "size"))})
        return out

    def _strata(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        size = table["size"].to_numpy(float)
        size_bin = np.where(np.isnan(size), "", np.array(SIZE_STRATA, dtype=object)[np.digitize(np.nan_to_num(size),
                                                                                                  SIZE_BINS)])
        subtlety = table["subtlety"].map(lambda v: "" if pd.isna(v) else f"subtlety {int(v)}").to_numpy(object)
        return {"state": table["state"].to_numpy(object), "size": size_bin.astype(object), "subtlety": subtlety}

    def synthetic_data(self, out_dir: Path, **overrides) -> Path:
        """Generate (once) the synthetic JSRT phantom in the Kaggle layout into ``out_dir``.

        Options come from ``phantom`` in the plugin options, updated by ``overrides`` (size, bit_depth, nested,
        seed, metadata: a JSRT table whose rows the phantom reproduces).
        """
        opts = validate_model(PhantomOptions, self.options.phantom.model_dump() | overrides, "phantom options")
        target = Path(out_dir)
        marker = target / ".complete"
        if not marker.is_file():
            from .phantom import generate_phantom  # imports SciPy (a second): only when generating

            rows = None if opts.metadata is None else pd.read_csv(opts.metadata, dtype=str, keep_default_na=False)
            generate_phantom(target, size=opts.size, bit_depth=opts.bit_depth, nested=opts.nested, seed=opts.seed,
                             metadata=rows)
            marker.write_text("ok\n")
        return target
