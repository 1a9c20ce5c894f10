"""The plugin contract, discovery through entry points, and the conformance check."""

from __future__ import annotations

from .conformance import ConformanceReport, check_plugin
from .contract import Plugin, check_tasks, list_plugins, load_class, load_plugin, plugin_version, task_problems

__all__ = ["ConformanceReport", "Plugin", "check_plugin", "check_tasks", "list_plugins", "load_class", "load_plugin",
           "plugin_version", "task_problems"]
