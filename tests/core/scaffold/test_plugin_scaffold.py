"""`mtl init plugin`: the names it refuses, the folder it will not overwrite, and generated code that imports only
what mtl_core exports and passes the project's lint (the install, check and run are in tests/e2e/test_init.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import mtl_core
from mtl_core.errors import MTLError
from mtl_core.scaffold import plugin, plugin_files_for, write_plugin

RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("name", ["Demo", "1demo", "my-plugin", "my plugin", "class", "démo", "_demo", ""])
def test_a_name_that_is_no_snake_case_package_name_is_refused(tmp_path, name):
    with pytest.raises(MTLError, match="is not a snake_case Python name") as caught:
        write_plugin(name, tmp_path / "out")
    assert "\n" not in str(caught.value) and not (tmp_path / "out").exists()


def test_an_installed_plugins_name_is_refused(tmp_path, monkeypatch):
    info = SimpleNamespace(name="stripes", distribution="mtl-stripes")
    monkeypatch.setattr(plugin, "list_plugins", lambda: [info])
    with pytest.raises(MTLError, match="a plugin named 'stripes' is installed already"):
        write_plugin("stripes", tmp_path / "out")


def test_a_folder_with_something_in_it_is_not_touched(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    with pytest.raises(MTLError, match="exists and is not empty"):
        write_plugin("demo", tmp_path / "demo")
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert write_plugin("demo", tmp_path / "empty")  # an empty folder is fine


def test_the_package_layout_and_its_entry_point(tmp_path):
    files = plugin_files_for("cell_counts")
    assert sorted(files) == ["README.md", "example/config.yaml", "mtl_cell_counts/__init__.py",
                             "mtl_cell_counts/plugin.py", "mtl_cell_counts/synthetic.py", "pyproject.toml",
                             "tests/test_cell_counts.py"]
    assert 'cell_counts = "mtl_cell_counts.plugin:CellCountsPlugin"' in files["pyproject.toml"]
    assert 'name = "mtl-cell-counts"' in files["pyproject.toml"]
    config = yaml.safe_load(files["example/config.yaml"])
    assert config["plugin"] == "cell_counts" and config["model"]["backbones"] == ["mtl_small_cnn"]


def test_generated_code_imports_only_what_mtl_core_exports():
    for path, text in plugin_files_for("demo").items():
        if not path.endswith(".py"):
            continue
        tree = ast.parse(text)  # it is valid Python
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtl_core"):
                assert node.module == "mtl_core", f"{path} imports from {node.module}"
                assert {a.name for a in node.names} <= set(mtl_core.__all__), path


@pytest.mark.skipif(not RUFF.is_file(), reason="ruff is not installed beside this Python")
def test_generated_code_passes_the_projects_lint(tmp_path):
    write_plugin("demo", tmp_path / "demo")
    done = subprocess.run([str(RUFF), "check", "--no-cache", str(tmp_path / "demo")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
