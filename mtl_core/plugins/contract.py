"""Plugins: how a data set enters the engine.

A plugin is a class (subclass of :class:`Plugin`) registered under the entry-point group ``mtl.plugins`` and
found with the standard library's ``importlib.metadata``; only the plugin a config names is imported. For quick
experiments a config may name a file instead: ``./my_plugin.py:MyPlugin``.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..config import validate_model
from ..data import Records
from ..errors import MTLError, PluginError
from ..io import read_image
from ..registry import suggest
from ..tasks import TASK_KINDS, Task

GROUP = "mtl.plugins"
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class NoOptions(BaseModel):
    """Options model of a plugin that takes none."""

    model_config = ConfigDict(extra="forbid")


class Plugin:
    """Base class of a plugin: declares tasks and reads a data folder into :class:`Records`.

    Example:
        >>> class Shapes(Plugin):
        ...     name = "shapes"
        ...     def tasks(self):
        ...         return [ClassificationTask("kind", classes=["disc", "square"])]
        ...     def load_records(self, data_dir):
        ...         ...  # read the folder; return Records(ids, paths, {"kind": values})
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: name of a stratum in ``Records.strata`` to stratify splits on (e.g. a class column), or None.
    stratify_key: ClassVar[str | None] = None

    def __init__(self, options: BaseModel | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def tasks(self) -> list[Task]:
        """The tasks, with the plugin's default loss weights and settings."""
        raise NotImplementedError

    def load_records(self, data_dir: Path) -> Records:
        """Read ``data_dir`` into :class:`Records`; raise :class:`DataError` naming the culprit on bad input."""
        raise NotImplementedError

    def read_image(self, path: Path) -> np.ndarray:
        """Pixels of one image as float32 (H, W) in [0, 1]. Defaults to the core reader (PNG, JPEG, DICOM...)."""
        return read_image(path)

    def synthetic_data(self, out_dir: Path, **options: Any) -> Path | None:
        """Write a synthetic data set into ``out_dir`` and return its folder, or None if the plugin has none.

        ``options`` come from ``mtl synthesize NAME OUT --option key=value``."""
        return None

    def reader_id(self) -> str:
        """Identity of the image reader, part of the feature-cache key."""
        return f"{type(self).__module__}.{type(self).__qualname__}:{plugin_version(self)}"


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin as listed by ``mtl plugins``."""

    name: str
    distribution: str
    version: str
    target: str


_DISTRIBUTION_VERSIONS: dict[type, str] = {}  # plugin class -> version of the distribution it was loaded from


def plugin_version(plugin: Plugin) -> str:
    """Version of the distribution that provides ``plugin``'s module, or 'unknown'."""
    known = _DISTRIBUTION_VERSIONS.get(type(plugin))
    return known or _module_version(type(plugin).__module__.split(".")[0])


@functools.cache
def _module_version(top: str) -> str:
    """Looked up once per process: listing the installed distributions reads every one's file list (~1 s)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    for dist in packages_distributions().get(top, []):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=GROUP))


def list_plugins() -> list[PluginInfo]:
    """Installed plugins (nothing is imported)."""
    found = []
    for ep in _entry_points():
        dist = ep.dist
        found.append(PluginInfo(ep.name, dist.name if dist else "unknown", dist.version if dist else "unknown",
                                ep.value))
    return sorted(found, key=lambda p: p.name)


def _load_from_file(spec: str) -> type:
    file_part, _, class_name = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not path.is_file() or not class_name:
        raise PluginError(f"plugin file {spec!r}: expected an existing 'path/to/file.py:ClassName'")
    module_name = f"mtl_user_plugin_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - plugin code is foreign: report, don't crash
        raise PluginError(f"plugin file {path} failed to import: {type(exc).__name__}: {exc}; fix the plugin file "
                          f"(run it with python to see the full error)") from None
    if not hasattr(module, class_name):
        raise PluginError(f"plugin file {path} has no class {class_name!r}")
    return getattr(module, class_name)


def _load_class(name: str) -> tuple[type, str]:
    if ":" in name and (name.endswith(".py") or ".py:" in name):
        return _load_from_file(name), f"file {name.rpartition(':')[0]}"
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        installed = [ep.name for ep in _entry_points()]
        raise PluginError(suggest(name, installed, "plugin") + " (install a plugin distribution that registers "
                          f"it in the entry-point group {GROUP!r}, or give 'path/to/file.py:ClassName')")
    ep = matches[0]
    origin = f"distribution {ep.dist.name if ep.dist else 'unknown'} ({ep.value})"
    try:
        cls = ep.load()
    except Exception as exc:  # noqa: BLE001 - plugin code is foreign: report, don't crash
        raise PluginError(f"plugin {name!r} from {origin} failed to load: {type(exc).__name__}: {exc}; fix the plugin "
                          f"or reinstall its distribution") from None
    if ep.dist is not None and isinstance(cls, type):  # known here for free; searching for it later costs ~1 s
        _DISTRIBUTION_VERSIONS[cls] = ep.dist.version
    return cls, origin


def check_tasks(tasks: Any, origin: str) -> list[Task]:
    """Tasks must be a non-empty list of :class:`Task` of registered kinds with unique snake_case names."""
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, Task) for t in tasks):
        raise PluginError(f"plugin from {origin}: tasks() must return a non-empty list of Task objects, got "
                          f"{type(tasks).__name__}")
    names = [t.name for t in tasks]
    for name in names:
        if not _TASK_NAME.match(name):
            raise PluginError(f"plugin from {origin}: task name {name!r} is not snake_case")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PluginError(f"plugin from {origin}: task names must be unique, {dupes} repeat")
    unknown = [t for t in tasks if t.kind not in TASK_KINDS]
    if unknown:  # a run would train it, but mtl predict could not rebuild it from model.json
        raise PluginError(f"plugin from {origin}: task {unknown[0].name!r} has kind {unknown[0].kind!r}, which is not "
                          f"registered; decorate its class with @mtl_core.register_task_kind")
    return tasks


def load_plugin(name: str, options: dict[str, Any] | None = None) -> Plugin:
    """Import the plugin ``name`` (entry point or file spec), validate its options and tasks, and build it.

    Example:
        >>> plugin = load_plugin("my_dataset", {"some_option": 1})  # doctest: +SKIP
        >>> [t.name for t in plugin.tasks()]  # doctest: +SKIP
    """
    cls, origin = _load_class(name)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"plugin {name!r} from {origin} is not a subclass of mtl_core.Plugin")
    if cls.Options.model_config.get("extra") != "forbid":
        raise PluginError(f"plugin {name!r} from {origin}: its Options model must set extra='forbid' so that a "
                          f"misspelt option is an error, not silently ignored")
    opts = validate_model(cls.Options, options or {}, f"plugin_options of {name!r}")
    try:
        plugin = cls(opts)
        check_tasks(plugin.tasks(), origin)
    except MTLError:
        raise
    except Exception as exc:  # noqa: BLE001 - plugin code is foreign: report, don't crash
        raise PluginError(f"plugin {name!r} from {origin} failed: {type(exc).__name__}: {exc}") from None
    plugin.origin = origin  # type: ignore[attr-defined]
    return plugin
