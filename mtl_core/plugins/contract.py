"""Plugins: how a data set enters the engine.

A plugin is a class (subclass of :class:`Plugin`) registered under the entry-point group ``mtl.plugins`` and
found with the standard library's ``importlib.metadata``; only the plugin a config names is imported. For quick
experiments a config may name a file instead: ``./my_plugin.py:MyPlugin``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from ..config import Strict, validate_model
from ..data import Records
from ..data.augment import SAFE_BY_DEFAULT
from ..errors import MTLError, PluginError
from ..io import read_image
from ..registry import SNAKE_CASE, is_snake_case, suggest
from ..tasks import TASK_KINDS, Task, kind_class

GROUP = "mtl.plugins"


class NoOptions(Strict):
    """Options model of a plugin that takes none."""


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
    #: augmentations (``train.augment``) that leave every label of the plugin true, among flip_lr, flip_ud, rotate,
    #: scale, translate, intensity, contrast and noise. The default leaves out flips (a left/right flip changes a
    #: side) and zoom (it changes sizes in pixels); point targets move with the image whatever is declared.
    label_safe_transforms: ClassVar[tuple[str, ...]] = SAFE_BY_DEFAULT

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


#: What foreign plugin code may raise and the engine reports instead of dying with it: a plugin that calls
#: ``sys.exit()`` at import is one broken plugin, not the end of ``mtl plugins``. KeyboardInterrupt still stops.
FOREIGN_ERRORS = (Exception, SystemExit)


def foreign_error(exc: BaseException) -> str:
    """One line, at most about 200 characters, saying what plugin code raised."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r:.80}) (the plugin called sys.exit)"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text if len(text) <= 200 else text[:197] + '...'}"


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin as listed by ``mtl plugins``: when loaded (``list_plugins(load=True)``), its task names,
    or ``problem``, why it is broken (one line)."""

    name: str
    distribution: str
    version: str
    target: str
    tasks: tuple[str, ...] = ()
    problem: str | None = None


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


def list_plugins(load: bool = False) -> list[PluginInfo]:
    """Installed plugins, by name. Without ``load`` nothing is imported; with it each is loaded with its default
    options and its tasks are listed, or it is marked broken with the reason (a broken plugin, even one that calls
    ``sys.exit`` at import or has a malformed ``Options``, never stops the listing)."""
    found = []
    for ep in _entry_points():
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "unknown", dist.version if dist else "unknown", ep.value)
        if load:
            try:
                info = replace(info, tasks=tuple(t.name for t in load_plugin(ep.name).tasks()))
            except MTLError as exc:
                info = replace(info, problem=" ".join(str(exc).split()))
            except FOREIGN_ERRORS as exc:  # tasks() raising the second time it is called
                info = replace(info, problem=f"plugin {ep.name!r} failed: {foreign_error(exc)}")
        found.append(info)
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
    except FOREIGN_ERRORS as exc:  # plugin code is foreign: report, don't crash
        raise PluginError(f"plugin file {path} failed to import: {foreign_error(exc)}; fix the plugin file "
                          f"(run it with python to see the full error)") from None
    if not hasattr(module, class_name):
        raise PluginError(f"plugin file {path} has no class {class_name!r}")
    return getattr(module, class_name)


def load_class(name: str) -> tuple[type, str]:
    """The class a plugin name stands for (an entry point of :data:`GROUP`, or ``path/to/file.py:ClassName``) and
    where it came from ("distribution NAME (module:Class)" or "file PATH"), without checking it.

    Raises:
        PluginError: no such plugin (with "did you mean"), or its module fails to import.
    """
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
    except FOREIGN_ERRORS as exc:  # plugin code is foreign: report, don't crash
        raise PluginError(f"plugin {name!r} from {origin} failed to load: {foreign_error(exc)}; fix the plugin "
                          f"or reinstall its distribution") from None
    if ep.dist is not None and isinstance(cls, type):  # known here for free; searching for it later costs ~1 s
        _DISTRIBUTION_VERSIONS[cls] = ep.dist.version
    return cls, origin


def task_problems(tasks: Any) -> list[str]:
    """Every way ``tasks`` (what a plugin's ``tasks()`` returned) breaks the contract, one sentence each: a
    non-empty list of :class:`Task` objects of registered kinds with unique snake_case names.

    The one check of a plugin's tasks: :func:`load_plugin` raises with these problems, ``mtl plugins check`` lists
    them.
    """
    if not isinstance(tasks, list) or not tasks:
        return [f"tasks() returned {tasks!r:.200}, expected a non-empty list of Task objects"]
    kinds = ", ".join(TASK_KINDS.names())
    problems = [f"tasks()[{i}] is {t!r:.200}, expected a mtl_core Task of a registered kind ({kinds})"
                for i, t in enumerate(tasks) if not isinstance(t, Task)]
    tasks = [t for t in tasks if isinstance(t, Task)]
    problems += [_kind_problem(t, kinds) for t in tasks if kind_class(t.kind) is not type(t)]
    names = [t.name for t in tasks]
    problems += [f"task name {n!r} is not snake_case, expected {SNAKE_CASE.pattern}" for n in names
                 if not is_snake_case(n)]
    problems += [f"task name {n!r} appears {names.count(n)} times, expected unique names (one head each)"
                 for n in dict.fromkeys(names) if names.count(n) > 1]
    return problems


def _kind_problem(task: Task, kinds: str) -> str:
    owner = kind_class(task.kind)
    what = "which is not registered" if owner is None else f"which is registered for {owner.__name__}"
    return (f"task {task.name!r} has kind {task.kind!r}, {what} (its class: {type(task).__name__}; kinds: "
            f"{kinds}); decorate its class with @mtl_core.register_task_kind under its own kind: mtl predict "
            f"rebuilds tasks by kind")


def options_problems(cls: type) -> list[str]:
    """What is wrong with a plugin class's ``Options``: it must be a pydantic model that refuses unknown keys."""
    model = getattr(cls, "Options", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return [f"Options is {model!r}, expected a pydantic BaseModel subclass (subclass mtl_core.Strict)"]
    extra = model.model_config.get("extra") or "ignore"  # pydantic's default drops unknown keys silently
    if extra != "forbid":
        return [f"{model.__name__} accepts unknown keys (extra={extra!r}), expected extra='forbid' so that a "
                f"misspelt option is an error: subclass mtl_core.Strict or set model_config = "
                f"ConfigDict(extra='forbid')"]
    return []


def check_tasks(tasks: Any, origin: str) -> list[Task]:
    """``tasks`` if :func:`task_problems` finds nothing, else a :class:`PluginError` listing every problem."""
    problems = task_problems(tasks)
    if problems:
        raise PluginError(f"plugin from {origin}: " + "; ".join(problems))
    return tasks


def load_plugin(name: str, options: dict[str, Any] | None = None) -> Plugin:
    """Import the plugin ``name`` (entry point or file spec), validate its options and tasks, and build it.

    Example:
        >>> plugin = load_plugin("my_dataset", {"some_option": 1})  # doctest: +SKIP
        >>> [t.name for t in plugin.tasks()]  # doctest: +SKIP
    """
    cls, origin = load_class(name)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"plugin {name!r} from {origin} is not a subclass of mtl_core.Plugin")
    try:
        problems = options_problems(cls)
        if problems:
            raise PluginError(f"plugin {name!r} from {origin}: {problems[0]}")
        opts = validate_model(cls.Options, options or {}, f"plugin_options of {name!r}")
    except MTLError:
        raise
    except FOREIGN_ERRORS as exc:  # a malformed Options: its validators or config raise something else
        raise PluginError(f"plugin {name!r} from {origin}: its Options failed: {foreign_error(exc)}") from None
    try:
        plugin = cls(opts)
        check_tasks(plugin.tasks(), origin)
    except MTLError:
        raise
    except FOREIGN_ERRORS as exc:  # plugin code is foreign: report, don't crash
        raise PluginError(f"plugin {name!r} from {origin} failed: {foreign_error(exc)}") from None
    plugin.origin = origin  # type: ignore[attr-defined]
    return plugin
