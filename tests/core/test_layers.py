"""The package's shape: subpackages by layer, imports that only point down, no import circle.

Every ``import`` of the project's own modules in ``mtl_core`` is read from the source (``ast``, nothing is imported),
resolved to the module it names, and checked against :data:`mtl_core.LAYERS`: a module may import its own
subpackage and anything in a lower layer, never a higher one or another package of its own layer. An import inside
a function is allowed only where it keeps ``import mtl_core`` (or a command) light, and then it says so in a
comment on its line or the line above (``# lazy: ...``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mtl_core

PACKAGE = Path(mtl_core.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _target(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The project modules an import statement loads (``from . import x`` names the submodule x when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "mtl_core"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "mtl_core":
            return []
    else:
        here = module.split(".") if _is_package(module) else module.split(".")[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join([*here, node.module] if node.module else here)
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in MODULES else base)
    return found


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(target module, line, inside a function) for each project import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend((t, child.lineno, in_function) for t in _target(module, child))
            visit(child, inner)

    visit(tree, False)
    return found


def _layer(module: str) -> tuple[int, str]:
    """(rank, room) of a module: a root module is its own room, a subpackage's modules share theirs."""
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else ""
    if room not in mtl_core.LAYERS:
        raise AssertionError(f"{module} is in no layer: add its room to mtl_core.LAYERS")
    return mtl_core.LAYERS[room], room


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "mtl_core":
            _layer(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "mtl_core"))
def test_imports_point_down(module: str) -> None:
    rank, room = _layer(module)
    for target, line, _ in GRAPH[module]:
        if target == "mtl_core":
            continue  # the root's lazy public surface is for users, not for the engine itself
        their_rank, their_room = _layer(target)
        assert their_rank < rank or their_room == room, \
            f"{module}:{line} imports {target}, which is in layer {their_room!r} ({their_rank}), not below " \
            f"{room!r} ({rank})"


def _said(lines: list[str], line: int) -> str:
    """The import's line, the import lines right above it, and the line above those (a comment)."""
    said, i = lines[line - 1], line - 2
    while i >= 0 and lines[i].strip().startswith(("from ", "import ")):
        said, i = said + lines[i], i - 1
    return said + (lines[i] if i >= 0 else "")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_say_why(module: str) -> None:
    lines = MODULES[module].read_text().splitlines()
    for target, line, in_function in GRAPH[module]:
        if not in_function:
            continue
        assert "# lazy:" in _said(lines, line), \
            f"{module}:{line} imports {target} inside a function without a '# lazy:' comment"


def test_no_import_circle() -> None:
    edges = {m: sorted({t for t, _, _ in GRAPH[m] if t != m and t != "mtl_core"}) for m in MODULES}
    state: dict[str, int] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                circle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])


def test_the_checker_sees_a_bad_import(tmp_path: Path) -> None:
    # the checks above must be able to fail: an upward import written in a low module is found
    source = "from ..workflow.run import prepare\n"
    tree = ast.parse(source)
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _target("mtl_core.io.files", node) == ["mtl_core.workflow.run"]
    assert _layer("mtl_core.workflow.run")[0] > _layer("mtl_core.io.files")[0]
