"""``mtl plugins check NAME``: run a plugin through the checks the engine relies on, on a few samples.

The checks of the class (its options and tasks, with the same rules :func:`~mtl_core.plugins.contract.load_plugin`
applies) come first, then the data checks of :mod:`mtl_core.plugins.data_checks`. Each check returns the problems it
found, one sentence each, saying what the plugin returned and what was expected. A check that needs an earlier
one's result is skipped when that one failed.

Example:
    >>> report = check_plugin("table", data=None)  # doctest: +SKIP
    >>> print(report.format())  # doctest: +SKIP
    >>> report.ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import validate_model
from ..errors import MTLError
from ..registry import is_snake_case
from ..tasks import Task
from .contract import FOREIGN_ERRORS, Plugin, load_class, options_problems, task_problems
from .data_checks import CheckResult, DataContext, describe_exception, run_data_checks


@dataclass
class ConformanceReport:
    """Every check of one plugin, in order."""

    plugin: str
    origin: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check ran and passed."""
        return bool(self.results) and all(r.ok for r in self.results)

    def format(self) -> str:
        """Human-readable report: one line per check, then one indented line per problem."""
        lines = [f"plugin {self.plugin!r} from {self.origin}"]
        for r in self.results:
            status = "skip" if r.skipped else ("ok" if r.ok else "FAIL")
            lines.append(f"  {status:<5}{r.name:<13}{r.summary}".rstrip())
            lines += [f"         - {problem}" for problem in r.problems]
        failed = [r.name for r in self.results if r.problems]
        skipped = [r.name for r in self.results if r.skipped]
        lines.append(f"passed: {len(self.results)} checks" if self.ok else
                     f"FAILED: {', '.join(failed)} ({len(failed)} of {len(self.results)} checks)"
                     + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
        return "\n".join(lines)


def check_options(cls: type, raw: dict[str, Any]) -> tuple[CheckResult, BaseModel | None]:
    """The Options model: a strict pydantic model that validates ``raw`` and survives a JSON round trip."""
    problems = options_problems(cls)
    model = getattr(cls, "Options", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return CheckResult("options", tuple(problems)), None
    name = getattr(cls, "name", "")
    if not is_snake_case(name):
        problems.append(f"the class attribute name is {name!r}, expected a snake_case string (the entry-point name)")
    try:
        options = validate_model(model, raw, "plugin options")
    except MTLError as exc:
        return CheckResult("options", (*problems, str(exc))), None
    try:
        again = model.model_validate(options.model_dump(mode="json"))
        if again != options:
            problems.append(f"{model.__name__} changes under model_dump(mode='json') and validation (got "
                            f"{again!r}, expected {options!r}); the run folder records options as JSON")
    except FOREIGN_ERRORS as exc:  # plugin code is foreign: report, don't crash
        problems.append(f"{model.__name__} does not survive a JSON round trip: {describe_exception(exc)}")
    summary = f"{model.__name__} with {len(model.model_fields)} option(s)"
    return CheckResult("options", tuple(problems), summary), options


def check_plugin_tasks(plugin: Plugin) -> tuple[CheckResult, list[Task]]:
    """tasks(): the contract's :func:`~mtl_core.plugins.contract.task_problems`, and the same tasks twice."""
    try:
        tasks = plugin.tasks()
        second = plugin.tasks()
    except FOREIGN_ERRORS as exc:
        return CheckResult("tasks", (f"tasks() raised {describe_exception(exc)}",)), []
    problems = task_problems(tasks)
    if not isinstance(tasks, list) or not tasks:
        return CheckResult("tasks", tuple(problems)), []
    tasks = [t for t in tasks if isinstance(t, Task)]
    names = [t.name for t in tasks]
    if isinstance(second, list) and [getattr(t, "name", t) for t in second] != names:
        problems.append(f"a second call of tasks() gave {[getattr(t, 'name', t) for t in second]}, expected the "
                        f"same tasks as the first ({names})")
    summary = ", ".join(f"{t.name} ({t.kind}" + (f", {len(t.classes)} classes)" if hasattr(t, "classes") else ")")
                        for t in tasks)
    return CheckResult("tasks", tuple(problems), summary), tasks


def check_plugin(plugin: str | type, options: dict[str, Any] | None = None, data: Path | str | None = None,
                 samples: int = 8, image_size: int = 64) -> ConformanceReport:
    """Run every check on ``plugin`` (an entry-point name, ``path/file.py:Class``, or a Plugin subclass).

    Args:
        plugin: what to check.
        options: plugin options (as in a config's ``plugin_options``).
        data: a data folder; None uses the plugin's synthetic data, generated into a temporary folder.
        samples: number of cases the image and batch checks read.
        image_size: side the sampled images are resized to.
    """
    cls, origin = (plugin, f"class {plugin.__module__}.{plugin.__qualname__}") if isinstance(plugin, type) \
        else load_class(plugin)
    label = plugin if isinstance(plugin, str) else getattr(cls, "name", "?")
    report = ConformanceReport(str(label), origin)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        report.results.append(CheckResult("options", (f"{cls!r} is not a subclass of mtl_core.Plugin",)))
        return report
    try:
        result, opts = check_options(cls, options or {})
    except FOREIGN_ERRORS as exc:  # a malformed Options: its config or validators raise
        result, opts = CheckResult("options", (f"Options raised {describe_exception(exc)}",)), None
    report.results.append(result)
    if opts is None:
        return report
    try:
        instance = cls(opts)
    except FOREIGN_ERRORS as exc:
        report.results.append(CheckResult("tasks", (f"building the plugin raised {describe_exception(exc)}",)))
        return report
    result, tasks = check_plugin_tasks(instance)
    report.results.append(result)
    if not tasks:
        return report
    with tempfile.TemporaryDirectory(prefix="mtl-check-") as scratch:
        ctx = DataContext(cls, opts, instance, tasks, image_size=image_size, scratch=Path(scratch))
        report.results += run_data_checks(ctx, None if data is None else Path(data), samples)
    return report
