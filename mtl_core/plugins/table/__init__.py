"""The built-in ``table`` plugin: a folder of images plus a CSV or Parquet table, tasks declared in the config.

Its options are documented in ``docs/configuration.md`` (plugin options: table); ``examples/shapes/`` uses it.
"""

from __future__ import annotations

from .options import (
    BinarySpec,
    ClassificationSpec,
    Condition,
    PatternRule,
    PointSpec,
    RegressionSpec,
    ShapesOptions,
    StratumSpec,
    TableOptions,
)
from .plugin import TablePlugin, build_task

__all__ = ["BinarySpec", "ClassificationSpec", "Condition", "PatternRule", "PointSpec", "RegressionSpec",
           "ShapesOptions", "StratumSpec", "TableOptions", "TablePlugin", "build_task"]
