"""The built-in ``table`` plugin: a folder of images plus a CSV or Parquet table, tasks declared in the config.

See ``docs/configuration.md`` (plugin options: table) and ``examples/jsrt_table/`` and ``examples/shapes/``.
"""

from __future__ import annotations

from .options import (
    BinarySpec,
    ClassificationSpec,
    Condition,
    PatternRule,
    RegressionSpec,
    ShapesOptions,
    TableOptions,
)
from .plugin import TablePlugin, build_task

__all__ = ["BinarySpec", "ClassificationSpec", "Condition", "PatternRule", "RegressionSpec", "ShapesOptions",
           "TableOptions", "TablePlugin", "build_task"]
