"""`mtl init`, end to end through the real CLI, offline: a new plugin package installs, passes `mtl plugins check`
and its example runs; a config inferred from the shapes data set validates and runs; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_core.config import load_config

# The engine's small CNN, random, at 32 px, a few epochs: the path end to end in seconds, not a result.
TINY = ["--set", "model.backbones=[mtl_small_cnn]", "--set", "model.weights=random", "--set", "data.image_size=32",
        "--set", "train.epochs=3", "--set", "train.patience=3"]


def _run(*args: str, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **env}, timeout=timeout)


def _mtl(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run("-m", "mtl_core.cli", *args, cwd=cwd, env=env)


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run("-m", "pip", *args, "-q", "--disable-pip-version-check", cwd=cwd, env={})


@pytest.fixture
def demo(tmp_path, cache_env):
    """`mtl init plugin demo` in a temporary folder, installed in editable mode; uninstalled whatever happens (a
    copy left by an interrupted session makes init refuse the name, and is removed for the next one)."""
    try:
        done = _mtl("init", "plugin", "demo", cwd=tmp_path, env=cache_env)
        assert done.returncode == 0, done.stderr
        assert "next: pip install -e demo" in done.stdout
        installed = _pip("install", "-e", "demo", "--no-build-isolation", "--no-deps", "--no-index", cwd=tmp_path)
        assert installed.returncode == 0, installed.stderr[-2000:]
        yield tmp_path
    finally:
        _pip("uninstall", "-y", "mtl-demo", cwd=tmp_path)


def test_a_new_plugin_installs_passes_the_check_runs_and_passes_its_tests(demo, cache_env):
    check = _mtl("plugins", "check", "demo", cwd=demo, env=cache_env)
    assert check.returncode == 0 and check.stdout.rstrip().endswith("passed: 8 checks"), check.stdout
    assert "plugin 'demo' from distribution mtl-demo (mtl_demo.plugin:DemoPlugin)" in check.stdout
    run = _mtl("run", "demo/example", cwd=demo, env=cache_env)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((demo / "runs" / "demo" / "metrics.json").read_text())
    assert list(metrics["tasks"]) == ["shape", "size"] and metrics["tasks"]["size"]["unit"] == "px"
    tests = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(demo), "demo/tests", cwd=demo,
                 env=cache_env)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout[-2000:]


def test_init_table_on_the_shapes_data_reproduces_a_config_that_runs(tmp_path, cache_env):
    data = tmp_path / "shapes"
    made = _mtl("synthesize", "table", str(data), "--option", "kind=shapes", "--option", "n=48", "--option",
                "size=32", cwd=tmp_path, env=cache_env)
    assert made.returncode == 0, made.stderr
    done = _mtl("init", "table", "shapes", "--output", "example", cwd=tmp_path, env=cache_env)
    assert done.returncode == 0, done.stderr
    options = load_config(tmp_path / "example").plugin_options
    expected = load_config(Path(__file__).parents[2] / "examples" / "shapes").plugin_options  # written by hand
    for key in ("table", "images", "id_column", "file_column", "group_column"):
        assert options[key] == expected[key], key
    assert "?" in options["missing_values"]
    tasks = options["tasks"]
    assert tasks["shape"] == {"kind": "classification", "classes": ["disc", "none", "square", "triangle"]}
    assert tasks["count"]["kind"] == "regression"
    assert tasks["size"] == {"kind": "regression", "unit": "px", "column": "size_px"}
    validate = _mtl("validate", "example", cwd=tmp_path, env=cache_env)
    assert validate.returncode == 0 and f"data: 48 cases in {data}" in validate.stdout, validate.stdout
    run = _mtl("run", "example", "--output", "run", *TINY, cwd=tmp_path, env=cache_env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(json.loads((tmp_path / "run" / "metrics.json").read_text())["tasks"]) == ["shape", "count", "size"]


def test_a_table_without_an_id_column_uses_the_file_name(tmp_path, cache_env):
    from PIL import Image

    (tmp_path / "cells").mkdir()
    rows = ["file,count,grade"]
    for i in range(8):
        Image.new("L", (16, 16), 20 * i).save(tmp_path / "cells" / f"cell{i}.png")
        rows.append(f"cell{i}.png,{i},{('low', 'high')[i % 2]}")
    (tmp_path / "cells" / "labels.csv").write_text("\n".join(rows) + "\n")
    done = _mtl("init", "table", "cells", cwd=tmp_path, env=cache_env)
    assert done.returncode == 0, done.stderr
    assert "no id column in the table: each image's file name is its id" in done.stdout
    options = load_config(tmp_path / "cells-config").plugin_options  # the default output folder
    assert (options["id_column"], options["file_column"], options["images"]) == ("file", "file", ".")


@pytest.mark.parametrize(("args", "message"), [
    (["init", "plugin", "Bad-Name"], "error: plugin name 'Bad-Name' is not a snake_case Python name"),
    (["init", "plugin", "demo", "--output", "full"], "error: output folder full exists and is not empty"),
    (["init", "table", "nowhere"], "error: data folder nowhere does not exist"),
    (["init", "table", "full"], "error: full holds no CSV or TSV file; name the table with --table FILE"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, cache_env, args, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    done = _mtl(*args, cwd=tmp_path, env=cache_env)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing written
