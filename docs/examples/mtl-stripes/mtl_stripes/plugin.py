# mtl_stripes/plugin.py
"""Grey images of stripes: which way they run (task 'orientation') and how far apart they are (task 'period')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mtl_core import ClassificationTask, DataError, Plugin, Records, RegressionTask, validate_model

ORIENTATIONS = ["horizontal", "vertical", "diagonal"]


class StripesOptions(BaseModel):
    """The config's `plugin_options`."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error that names it
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="epsilon of the orientation task")
    n: int = Field(90, ge=12, description="number of images in the synthetic data set")
    seed: int = Field(0, description="seed of the synthetic data set")


class StripesPlugin(Plugin):
    """A folder with labels.csv (file, orientation, period) and the PNG images it names."""

    name = "stripes"
    Options = StripesOptions
    stratify_key = "orientation"  # a key of Records.strata: the split keeps the class proportions

    def tasks(self):
        return [ClassificationTask("orientation", classes=ORIENTATIONS, label_smoothing=self.options.label_smoothing),
                RegressionTask("period", unit="px")]

    def load_records(self, data_dir: Path) -> Records:
        path = Path(data_dir) / "labels.csv"
        if not path.is_file():
            raise DataError(f"{path} is missing; expected a CSV with the columns file, orientation, period")
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # every cell as text, '' when empty
        orientation, period = [], []
        for line, row in enumerate(table.itertuples(), start=2):  # line 1 is the header
            if row.orientation and row.orientation not in ORIENTATIONS:
                raise DataError(f"{path}: line {line}: orientation {row.orientation!r}, expected one of "
                                f"{', '.join(ORIENTATIONS)} or empty")
            orientation.append(ORIENTATIONS.index(row.orientation) if row.orientation else np.nan)  # NaN: missing
            try:
                period.append(float(row.period) if row.period else np.nan)
            except ValueError:
                raise DataError(f"{path}: line {line}: period {row.period!r}, expected a number or empty") from None
        return Records(ids=list(table["file"]), paths=[Path(data_dir) / name for name in table["file"]],
                       targets={"orientation": np.array(orientation), "period": np.array(period)},
                       strata={"orientation": table["orientation"].to_numpy(object)})

    def synthetic_data(self, out_dir: Path, **overrides) -> Path:
        from .synthetic import write_stripes

        options = validate_model(StripesOptions, self.options.model_dump() | overrides, "stripes options")
        return write_stripes(Path(out_dir), n=options.n, seed=options.seed)
