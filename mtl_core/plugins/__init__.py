"""The plugin contract, discovery through entry points, and the conformance check."""

from __future__ import annotations

from .conformance import ConformanceReport, check_plugin
from .contract import Plugin, list_plugins, load_plugin, plugin_version

__all__ = ["ConformanceReport", "Plugin", "check_plugin", "list_plugins", "load_plugin", "plugin_version"]
