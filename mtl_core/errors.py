"""One error hierarchy for everything a user or a plugin can cause.

The command line turns an :class:`MTLError` into one readable line and a non-zero exit code; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class MTLError(Exception):
    """Base class: a problem the user can fix. The message says what was received, expected, and how to fix it."""


class ConfigError(MTLError):
    """A configuration file or override is invalid."""


class DataError(MTLError):
    """A data folder, table or image is missing, malformed or inconsistent."""


class PluginError(MTLError):
    """A plugin cannot be found, loaded, or does not meet the plugin contract."""


class WeightsError(MTLError):
    """Backbone or model weights are missing or do not fit the architecture."""


class RunError(MTLError):
    """A run folder is missing, incomplete or incompatible."""
