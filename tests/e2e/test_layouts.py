"""`mtl run` on phantoms in the documented layouts: 8- and 16-bit PNG, images/ and images/images/, rows of the
real metadata table when it is available (never at run time: only this test reads it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import EXAMPLE, FAST, REPO, mtl

REAL_TABLE = REPO.parent / "shared" / "data" / "jsrt_metadata.csv"


@pytest.mark.parametrize(("bits", "nested"), [(16, True), (8, False)])
def test_run_on_layout(bits, nested, tmp_path, cache_env):
    data = tmp_path / "jsrt"
    options = ["--option", "size=64", "--option", f"bit_depth={bits}", "--option", f"nested={str(nested).lower()}"]
    if REAL_TABLE.is_file():
        options += ["--option", f"metadata={REAL_TABLE}"]
    made = mtl("synthesize", "jsrt_res_mtnet", str(data), *options, env=cache_env)
    assert made.returncode == 0, made.stderr
    assert (data / "images" / "images").is_dir() == nested
    out = tmp_path / "out"
    done = mtl("run", str(EXAMPLE), "--data", str(data), "--output", str(out), *FAST, env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["tasks"]) == ["subtlety", "state", "position", "diagnosis", "location", "x", "y", "size"]
    assert metrics["run"]["cases"] == 247
    counts = metrics["label_counts"]
    assert sum(counts["state"].values()) == 247 and sum(counts["location"].values()) == 154


def test_synthesize_rejects_bad_option(tmp_path, cache_env):
    done = mtl("synthesize", "jsrt_res_mtnet", str(tmp_path / "p"), "--option", "bit_depth=12", env=cache_env)
    assert done.returncode == 2 and "bit_depth" in done.stderr and "Traceback" not in done.stderr


def test_real_table_rows_reproduced(tmp_path, cache_env):
    if not REAL_TABLE.is_file():
        pytest.skip("the real JSRT table is not beside the repository")
    data = tmp_path / "jsrt"
    done = mtl("synthesize", "jsrt_res_mtnet", str(data), "--option", "size=32", "--option",
               f"metadata={REAL_TABLE}", env=cache_env)
    assert done.returncode == 0, done.stderr
    assert (data / "jsrt_metadata.csv").read_text().splitlines()[1:] == \
        [line.rstrip("\r") for line in Path(REAL_TABLE).read_text().splitlines()[1:]]
