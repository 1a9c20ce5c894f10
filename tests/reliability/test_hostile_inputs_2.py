"""Hostile inputs through the real `mtl` command, second round: config bombs, non-finite settings, a diverging
training, table cells naming files outside the data folder, broken plugins, cache pruning, and two fresh runs
sharing one empty cache.

Each refused case exits 2 with one ``error:`` line naming the limit or the culprit, no traceback, no result in
``--output``, and nothing changed outside it (its data, its config and an earlier run's folder beside it are
byte-for-byte as they were).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.core.plugins.test_discovery import HEALTHY  # a plugin module that loads
from tests.e2e.conftest import mtl as mtl_subprocess

from .conftest import EXAMPLE, QUICK, REPO, error_lines, results_in

SHAPES = REPO / "examples" / "shapes"
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))


@dataclass(frozen=True)
class Case:
    """A refused command: ``argv(root, phantom, shapes)`` builds it in the case's folder (writing what it needs
    there); the error line must hold ``says``."""

    argv: Callable[[Path, Path, Path], list[str]]
    says: tuple[str, ...]


def _config(root: Path, text: str) -> str:
    (root / "cfg").mkdir()
    (root / "cfg" / "config.yaml").write_text(text)
    return str(root / "cfg")


def _table_cell(root: Path, shapes: Path, cell: Callable[[Path], str]) -> str:
    """A copy of the small shapes data set whose third row names ``cell(root)`` as its image."""
    data = root / "data"
    shutil.copytree(shapes, data)
    (root / "outside").mkdir()
    shutil.copy(next((data / "images").iterdir()), root / "outside" / "secret.png")
    table = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)
    table.loc[1, "file"] = cell(root)
    table.to_csv(data / "labels.csv", index=False)
    return str(data)


def _link_out(root: Path) -> str:
    (root / "data" / "images" / "link.png").symlink_to(root / "outside" / "secret.png")
    return "link.png"


def _run(target: str, *more: str) -> list[str]:
    return ["run", target, "--output", "{out}", *more]


def _on_phantom(*more: str) -> Callable[[Path, Path, Path], list[str]]:
    return lambda root, phantom, shapes: _run(str(EXAMPLE), "--data", str(phantom), *QUICK, *more)


def _on_table(cell: Callable[[Path], str]) -> Callable[[Path, Path, Path], list[str]]:
    return lambda root, phantom, shapes: _run(str(SHAPES), "--data", _table_cell(root, shapes, cell),
                                              "--set", "data.image_size=32", "--set", "train.epochs=2")


CASES = {
    "YAML alias bomb": Case(lambda r, p, s: _run(_config(r, "plugin: table\n" + LAUGHS)),
                            ("100,000 values", "aliases expanded", "limit of a config")),
    "YAML alias cycle": Case(lambda r, p, s: _run(_config(r, "plugin: table\nx: &x [*x]\n")), ("cycle",)),
    "deeply nested YAML": Case(lambda r, p, s: _run(_config(r, "plugin: table\nx: " + "[" * 50_000 + "]" * 50_000)),
                               ("nested more than 32 levels",)),
    "config file of 2 MB": Case(lambda r, p, s: _run(_config(r, "plugin: table\n#" + "x" * 2_000_000)),
                                ("1,048,576 bytes a config may hold",)),
    "deeply nested --set": Case(_on_phantom("--set", "plugin_options.x=" + "[" * 4000 + "]" * 4000),
                                ("override", "nested more than 32 levels")),
    "--set of 20,000 characters": Case(_on_phantom("--set", "train.device=" + "x" * 20_000),
                                       ("20,013 characters", "limit of 10,000")),
    "train.lr=.inf": Case(_on_phantom("--set", "train.lr=.inf"), ("train.lr", "finite number", "(got inf)")),
    "train.lr=nan": Case(_on_phantom("--set", "train.lr=nan"), ("train.lr", "finite number")),
    "diverging training (lr 1e30)": Case(_on_phantom("--set", "train.lr=1e30"),
                                         ("loss is not finite at epoch 1", "lower train.lr", "no results")),
    "table cell ../..": Case(_on_table(lambda root: "../../outside/secret.png"),
                             ("labels.csv: line 3", "'../../outside/secret.png'", "outside the data folder")),
    "table cell absolute path": Case(_on_table(lambda root: str(root / "outside" / "secret.png")),
                                     ("labels.csv: line 3", "outside the data folder")),
    "table cell linking out": Case(_on_table(_link_out), ("labels.csv: line 3", "'link.png'", "symbolic links")),
    "mtl cache prune without a limit": Case(lambda r, p, s: ["cache", "prune", "--dry-run"], ("--older-than",)),
    "mtl cache prune --older-than soon": Case(lambda r, p, s: ["cache", "prune", "--older-than", "soon"],
                                              ("'soon' is not an age",)),
}


def _snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory) -> Path:
    from mtl_core.plugins.table.options import ShapesOptions
    from mtl_core.plugins.table.shapes import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shapes") / "data", ShapesOptions(n=48, size=32, seed=0))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, phantom, small_shapes, cache_env, mtl):
    """Every case prepared in a folder of its own (beside an earlier run's folder) and run two at a time."""
    prepared = {}
    for name, case in CASES.items():
        root = tmp_path_factory.mktemp("hostile2")
        argv = [a.replace("{out}", str(root / "out")) for a in case.argv(root, phantom, small_shapes)]
        earlier = root / "earlier-run"
        earlier.mkdir()
        (earlier / "metrics.json").write_text('{"tasks": {}}\n')
        (earlier / "predictions.csv").write_text("id,x\na,1\n")
        prepared[name] = (root, argv, _snapshot(root, root / "out"))

    def launch(name):
        root, argv, before = prepared[name]
        return name, (root, before, mtl(*argv, env=cache_env))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(launch, prepared))


def _assert_one_line(done: subprocess.CompletedProcess, says: tuple[str, ...]) -> str:
    stderr = done.stderr
    assert done.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = error_lines(stderr)
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-2000:]
    assert len(errors[0]) < 600, errors[0][:2000]
    for part in says:
        assert part in errors[0], (part, errors[0])
    return errors[0]


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_with_one_line_and_touches_nothing(case, outcomes):
    root, before, done = outcomes[case]
    _assert_one_line(done, CASES[case].says)
    assert len(done.stdout) < 10_000
    assert results_in(root / "out") == []
    assert _snapshot(root, root / "out") == before  # the data, the config, the earlier run: byte for byte


# ---- broken plugins: listed as broken, refused with one line when asked for --------------------------------------

BROKEN = {
    "hostile_exits": ("import sys\nsys.exit(3)\n", "SystemExit(3)"),
    "hostile_options": ("from pydantic import field_validator\nfrom mtl_core import Strict\n" + HEALTHY
                        + "    class Options(Strict):\n        x: int = 1\n        @field_validator('x')\n"
                          "        @classmethod\n        def bad(cls, v):\n            raise TypeError('boom')\n"
                          "        model_config = {**Strict.model_config, 'validate_default': True}\n",
                        "its Options failed: TypeError: boom"),
}


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, cache_env) -> dict[str, str]:
    """$PYTHONPATH with a distribution whose entry points name a healthy plugin and two broken ones."""
    site = tmp_path_factory.mktemp("site")
    info = site / "mtl_hostile_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtl-hostile-plugins\nVersion: 0.1\n")
    sources = {"hostile_good": HEALTHY, **{name: source for name, (source, _) in BROKEN.items()}}
    for name, source in sources.items():
        (site / f"{name}_module.py").write_text(source.replace("{name}", name))
    (info / "entry_points.txt").write_text("[mtl.plugins]\n" + "".join(f"{n} = {n}_module:Good\n" for n in sources))
    return {**cache_env, "PYTHONPATH": os.pathsep.join(p for p in (str(site), str(REPO),
                                                                    os.environ.get("PYTHONPATH")) if p)}


def test_mtl_plugins_lists_healthy_and_broken_plugins(plugin_env):
    done = mtl_subprocess("plugins", env=plugin_env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "tasks: kind" in lines["hostile_good"] and "tasks: shape" in lines["table"]
    for name, (_, reason) in BROKEN.items():
        assert "broken: " in lines[name] and reason in lines[name], lines[name]
    assert "2 of " in done.stdout and "plugins broken" in done.stdout


@pytest.mark.parametrize("name", list(BROKEN))
def test_running_a_broken_plugin_is_one_line(plugin_env, tmp_path, name):
    (tmp_path / "config.yaml").write_text(f"plugin: {name}\n")
    done = mtl_subprocess("run", str(tmp_path), "--output", str(tmp_path / "out"), env=plugin_env)
    _assert_one_line(done, (name, BROKEN[name][1]))
    assert not (tmp_path / "out").exists() or results_in(tmp_path / "out") == []


# ---- the cache: two fresh runs share one generation; pruning stays inside --------------------------------------


def test_two_fresh_runs_share_one_empty_cache(tmp_path, mtl):
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    argv = ["run", str(SHAPES), "--set", "data.path=null", "--set", "plugin_options.synthetic.n=48",
            "--set", "plugin_options.synthetic.size=32", "--set", "data.image_size=32", "--set", "train.epochs=2"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda i: mtl(*argv, "--output", str(tmp_path / f"out{i}"), env=env), range(2)))
    assert all(done.returncode == 0 for done in runs), [done.stderr[-2000:] for done in runs]
    folders = {line.split(" in ", 1)[1].strip() for done in runs for line in done.stderr.splitlines()
               if line.startswith("no data folder given")}
    assert len(folders) == 1
    data = Path(folders.pop())
    table = pd.read_csv(data / "labels.csv")
    assert len(table) == 48 and sorted(table["file"]) == sorted(p.name for p in (data / "images").iterdir())
    assert [p.name for p in data.parent.iterdir() if p != data and not p.name.endswith(".lock")] == []
    metrics = [json.loads((tmp_path / f"out{i}" / "metrics.json").read_text()) for i in range(2)]
    assert metrics[0]["tasks"] == metrics[1]["tasks"]  # the same data set, the same seed: the same results


def test_prune_never_leaves_the_cache(tmp_path, mtl):
    cache, outside = tmp_path / "cache", tmp_path / "precious"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep.bin").write_bytes(b"x" * 100)
    (cache / "features" / "k").mkdir(parents=True)
    (cache / "features" / "k" / "0.a.safetensors").write_bytes(b"x" * 100)
    (cache / "features" / "out").symlink_to(outside)
    (cache / "synthetic").symlink_to(outside, target_is_directory=True)
    for path in (*outside.rglob("*"), *cache.rglob("*.safetensors")):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    done = mtl("cache", "prune", "--older-than", "1d", env={"MTL_CACHE_DIR": str(cache)})
    assert done.returncode == 0 and "removed 1 of 1 entries" in done.stdout, done.stdout + done.stderr
    assert (outside / "sub" / "keep.bin").read_bytes() == b"x" * 100
    assert (cache / "features" / "out").is_symlink() and (cache / "synthetic").is_symlink()
    shown = mtl("cache", env={"MTL_CACHE_DIR": str(cache)})
    assert shown.returncode == 0 and shown.stdout.rstrip().endswith("empty"), shown.stdout


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="symbolic links and fcntl locks")
