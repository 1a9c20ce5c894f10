"""Scaffolding for new users (``mtl init``): a plugin package to fill in, or a ``table`` config inferred from a CSV."""

from __future__ import annotations

from .columns import MAX_CLASSES, MISSING_MARKERS, Column
from .plugin import check_name, plugin_files_for, write_plugin
from .table import TableGuess, infer_table
from .table_config import config_text, write_table_config

__all__ = ["MAX_CLASSES", "MISSING_MARKERS", "Column", "TableGuess", "check_name", "config_text", "infer_table",
           "plugin_files_for", "write_plugin", "write_table_config"]
