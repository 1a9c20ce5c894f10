"""``mtl init plugin NAME``: a new plugin package that installs, passes ``mtl plugins check`` and runs offline.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> sorted(p.relative_to(out).as_posix() for p in write_plugin("demo", out))[:3]
    ['README.md', 'example/config.yaml', 'mtl_demo/__init__.py']
"""

from __future__ import annotations

import keyword
from pathlib import Path
from string import Template

from ..errors import MTLError
from ..plugins import list_plugins
from ..registry import SNAKE_CASE, is_snake_case
from . import plugin_files
from .files import write_files


def check_name(name: str) -> None:
    """Refuse a name that is not a snake_case Python package name, or that an installed plugin has."""
    if not is_snake_case(name) or keyword.iskeyword(name):
        raise MTLError(f"plugin name {name!r} is not a snake_case Python name ({SNAKE_CASE.pattern}: lower-case "
                       f"letters, digits and _, starting with a letter, not a Python keyword); try "
                       f"{_suggestion(name)!r}")
    taken = {info.name: info.distribution for info in list_plugins()}
    if name in taken:
        raise MTLError(f"a plugin named {name!r} is installed already (distribution {taken[name]}); choose another "
                       f"name")


def _suggestion(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name.strip().lower()).strip("_") or "my_plugin"
    return cleaned if cleaned[0].isalpha() else f"plugin_{cleaned}"


def plugin_files_for(name: str) -> dict[str, str]:
    """Relative path -> text of every file of the package for plugin ``name``."""
    module = name if name.startswith("mtl_") else f"mtl_{name}"
    values = {"name": name, "module": module, "dist": module.replace("_", "-"),
              "cls": "".join(part.capitalize() for part in name.split("_") if part),
              "title": name.replace("_", " ").capitalize()}
    files = {"pyproject.toml": plugin_files.PYPROJECT, "README.md": plugin_files.README,
             f"{module}/__init__.py": plugin_files.INIT, f"{module}/plugin.py": plugin_files.PLUGIN,
             f"{module}/synthetic.py": plugin_files.SYNTHETIC, "example/config.yaml": plugin_files.CONFIG,
             f"tests/test_{name}.py": plugin_files.TEST}
    return {path: Template(text).substitute(values) for path, text in files.items()}


def write_plugin(name: str, output: Path | None = None) -> list[Path]:
    """Write the package of plugin ``name`` into ``output`` (default: ``./NAME``); return the files written.

    Raises:
        MTLError: ``name`` is not a snake_case package name or is taken, or ``output`` exists and is not empty.
    """
    check_name(name)
    return write_files(Path(output) if output is not None else Path(name), plugin_files_for(name))
