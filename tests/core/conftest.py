"""With MTL_HIDE_PLUGINS=1 the core tests run as if no plugin distribution were installed."""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import sys

if os.environ.get("MTL_HIDE_PLUGINS") == "1":

    class _HidePlugins(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "jsrt_res_mtnet":
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by MTL_HIDE_PLUGINS)")
            return None

    sys.meta_path.insert(0, _HidePlugins())
    _original = importlib.metadata.entry_points

    def _entry_points(**params):
        found = _original(**params)
        if params.get("group") == "mtl.plugins":  # the core's own `table` plugin stays; the JSRT one goes
            return importlib.metadata.EntryPoints(e for e in found if not e.value.startswith("jsrt_res_mtnet"))
        return found

    importlib.metadata.entry_points = _entry_points
