"""The core never imports a plugin by name: its tests pass with the JSRT plugin hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_core_tests_pass_without_the_jsrt_plugin():
    env = {**os.environ, "MTL_HIDE_PLUGINS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/core"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


def test_core_sources_never_name_the_plugin():
    for path in (REPO / "mtl_core").rglob("*.py"):
        assert "jsrt" not in path.read_text().lower(), path
