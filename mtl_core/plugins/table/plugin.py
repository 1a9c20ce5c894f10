"""The ``table`` plugin: any folder of images plus a CSV or Parquet table, with the tasks declared in the config.

Example:
    >>> from mtl_core.plugins.contract import load_plugin
    >>> plugin = load_plugin("table", {"tasks": {
    ...     "grade": {"kind": "classification", "classes": ["low", "high"]},
    ...     "volume": {"kind": "regression", "column": "volume_ml", "unit": "ml"},
    ...     "lesion": {"kind": "point", "frame": [512, 512], "extent": "diameter", "extent_unit": "mm"}}})
    >>> [(t.name, t.kind) for t in plugin.tasks()]
    [('grade', 'classification'), ('volume', 'regression'), ('lesion', 'point')]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...config import validate_model
from ...data import Records
from ...errors import DataError
from ...io import core_reader_id
from ...tasks import BinaryTask, ClassificationTask, PointTask, RegressionTask, Task
from ..contract import Plugin
from .columns import Where, encode_task, stratum_values
from .options import (
    BinarySpec,
    ClassificationSpec,
    PointSpec,
    RegressionSpec,
    ShapesOptions,
    StratumSpec,
    TableOptions,
    _TaskSpec,
)
from .reading import ImageIndex, check_columns, read_table
from .shapes import write_shapes


def build_task(name: str, spec: _TaskSpec) -> Task:
    """The engine's task for one declaration."""
    if isinstance(spec, ClassificationSpec):
        return ClassificationTask(name, weight=spec.weight, classes=spec.class_names(),
                                  label_smoothing=spec.label_smoothing)
    if isinstance(spec, BinarySpec):
        return BinaryTask(name, weight=spec.weight, classes=spec.class_names(), pos_weight=spec.pos_weight)
    if isinstance(spec, PointSpec):
        return PointTask(name, weight=spec.weight, unit=spec.unit, frame=spec.frame, axes=spec.axes,
                         extent=spec.extent, extent_unit=spec.extent_unit, extent_scale=spec.extent_scale,
                         hit_radius=spec.hit_radius, negatives=spec.negatives)
    assert isinstance(spec, RegressionSpec)  # the union has four members
    return RegressionTask(name, weight=spec.weight, unit=spec.unit, loss_name=spec.loss, normalize=spec.normalize,
                          value_range=spec.value_range)


class TablePlugin(Plugin):
    """Images in a folder, labels in a table; every task is declared in ``plugin_options.tasks``.

    The split is stratified on ``plugin_options.stratify`` (a column); ``group_column`` fills
    :attr:`Records.groups`.
    """

    name = "table"
    Options = TableOptions

    def __init__(self, options: TableOptions | None = None) -> None:
        super().__init__(options)
        self.stratify_key = self.options.stratify  # type: ignore[misc] - per instance: it comes from the options
        self._suffixes: set[str] = set()  # of the image files read, for reader_id()

    def tasks(self) -> list[Task]:
        """One task per declaration, in the order of ``plugin_options.tasks``."""
        return [build_task(name, spec) for name, spec in self.options.tasks.items()]

    def _wanted_columns(self) -> dict[str, str]:
        o = self.options
        wanted = {o.id_column: "id_column"}
        for column, why in ((o.file_column, "file_column"), (o.group_column, "group_column"), (o.stratify, "stratify")):
            if column:
                wanted.setdefault(column, why)
        for spec in self._strata_specs():
            wanted.setdefault(spec.column, "strata")
        for name, spec in o.tasks.items():
            for column in spec.label_columns(name):
                wanted.setdefault(column, f"column of task {name!r}")
            if spec.when is not None:
                wanted.setdefault(spec.when.column, f"condition of task {name!r}")
        return wanted

    def load_records(self, data_dir: Path) -> Records:
        """Read the table and resolve every row's image; raise :class:`DataError` naming the row on bad input."""
        o = self.options
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(f"data folder {data_dir} does not exist; give the folder that holds {o.table}")
        table_path = data_dir / o.table
        frame, where = read_table(table_path)
        check_columns(frame, self._wanted_columns(), table_path)
        ids = self._ids(frame, where)
        index = ImageIndex(data_dir / o.images, data_dir)
        files = frame[o.file_column or o.id_column]
        paths = [index.resolve(files.iloc[row], where(row)) for row in range(len(frame))]
        self._suffixes = {path.suffix for path in paths}
        targets = {name: encode_task(name, spec, frame, o.missing_values, where) for name, spec in o.tasks.items()}
        strata = {spec.key: stratum_values(spec, frame, o.missing_values, where) for spec in self._strata_specs()}
        groups = np.array([cell.strip() for cell in frame[o.group_column]], dtype=object) if o.group_column else None
        return Records(ids=ids, paths=paths, targets=targets, strata=strata, groups=groups)

    def reader_id(self) -> str:
        """The core reader's identity (images are read with :func:`mtl_core.io.images.read_image`): another plugin
        reading the same files with it, as a plugin that uses the core reader does, shares the cached features."""
        return core_reader_id(self._suffixes) or super().reader_id()

    def _strata_specs(self) -> list[StratumSpec]:
        specs = list(self.options.strata)
        stratify = self.options.stratify
        if stratify and stratify not in {spec.key for spec in specs}:
            specs.append(StratumSpec(column=stratify))  # a plain column, stratified on as it is
        return specs

    def _ids(self, frame: pd.DataFrame, where: Where) -> list[str]:
        column = self.options.id_column
        ids = [cell.strip() for cell in frame[column]]
        first: dict[str, int] = {}
        for row, case_id in enumerate(ids):
            if not case_id:
                raise DataError(f"{where(row)}, column {column!r}: empty id; every row needs a unique id")
            if case_id in first:
                raise DataError(f"{where(row)}, column {column!r}: id {case_id!r} repeats {where(first[case_id])}; "
                                f"ids must be unique")
            first[case_id] = row
        return ids

    def synthetic_data(self, out_dir: Path, **overrides) -> Path | None:
        """Write the synthetic data set of ``plugin_options.synthetic`` updated by ``overrides``, or None.

        With the default tasks (those of the shapes data set) and no ``synthetic`` option, the shapes data set
        with its default options is written; with tasks of your own and no ``synthetic`` option there is none.
        ``mtl synthesize table OUT --option kind=shapes`` writes it whatever the options say.
        """
        base = self.options.synthetic
        if base is None and "tasks" not in self.options.model_fields_set:
            base = ShapesOptions()
        if base is None and not overrides:
            return None
        spec = validate_model(ShapesOptions, (base.model_dump() if base else {}) | overrides, "synthetic options")
        return write_shapes(Path(out_dir), spec)  # type: ignore[arg-type]

