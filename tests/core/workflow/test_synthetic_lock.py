"""Two processes generating the same synthetic data set into one empty cache at once: one builds it (into a
temporary folder renamed into place, under a lock), the other says it waits and then uses the finished folder;
both see the same complete data set, and nothing half-written or temporary is left."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mtl_core.errors import RunError
from mtl_core.io import build_folder_once

REPO = Path(__file__).resolve().parents[3]
# Each child: the table plugin's shapes data set (small), generation slowed by a second so that the two overlap,
# both released at once by a "go" file; prints the folder it got.
CHILD = """
import sys, time
from pathlib import Path
from mtl_core.config import load_config
from mtl_core.plugins import load_plugin
from mtl_core.workflow.checks import resolve_data_dir
config = load_config("examples/shapes", ["data.path=null", "plugin_options.synthetic.n=40",
                                         "plugin_options.synthetic.size=32"])
plugin = load_plugin(config.plugin, config.plugin_options)
build = plugin.synthetic_data
def slow(out_dir, **kw):
    made = build(out_dir, **kw)
    time.sleep(1.0)
    return made
plugin.synthetic_data = slow
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
made, notes = resolve_data_dir(plugin, config, None, print)
print("MADE", made)
"""


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks are POSIX")
def test_two_processes_share_one_generation(tmp_path):
    env = {**os.environ, "MTL_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(go)], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    time.sleep(0.5)  # let both import
    go.touch()
    outs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in outs]
    made = {line.split(" ", 1)[1] for out, _ in outs for line in out.splitlines() if line.startswith("MADE ")}
    assert len(made) == 1, outs
    folder = Path(made.pop())
    assert sum("waiting for another process" in out for out, _ in outs) == 1, outs
    labels = pd.read_csv(folder / "labels.csv")
    images = sorted(p.name for p in (folder / "images").iterdir())
    assert len(labels) == 40 and sorted(labels["file"]) == images and (folder / ".complete").is_file()
    leftovers = [p.name for p in folder.parent.iterdir() if p != folder and not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_build_that_fails_leaves_nothing_and_the_next_one_builds(tmp_path):
    target = tmp_path / "set"

    def broken(out: Path) -> Path:
        (out / "half").mkdir(parents=True)
        raise OSError("disk full")

    with pytest.raises(RunError, match=f"cannot write {target}: disk full"):
        build_folder_once(target, broken)
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["set.lock"]

    def good(out: Path) -> Path:
        (out / "inner").mkdir(parents=True, exist_ok=True)
        (out / "inner" / "a.txt").write_text("a")
        return out / "inner"

    assert build_folder_once(target, good) == target / "inner"
    assert (target / "inner" / "a.txt").read_text() == "a"
    assert build_folder_once(target, good) == target / "inner"  # a finished folder is used as it is


def test_stale_temporary_folders_of_a_killed_builder_are_removed(tmp_path):
    stale = tmp_path / ".set.building-123-abc"
    (stale / "images").mkdir(parents=True)
    assert build_folder_once(tmp_path / "set", lambda out: out.mkdir() or out) == tmp_path / "set"
    assert not stale.exists()


def test_a_cache_that_cannot_be_written_is_one_error(tmp_path):
    (tmp_path / "file").touch()
    with pytest.raises(RunError, match="cannot write .*file/set.lock: "):
        build_folder_once(tmp_path / "file" / "set", lambda out: out)


def test_nothing_to_build_is_none(tmp_path):
    assert build_folder_once(tmp_path / "set", lambda out: None) is None
    assert not (tmp_path / "set").exists()
