"""Shared fixtures for end-to-end tests: a small phantom and a runner for the real `mtl` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "jsrt_res_mtnet"
# Tiny backbones and few epochs: the end-to-end path, not the paper's numbers. No saliency overlays (importing
# MONAI and the Grad-CAM passes add seconds to every run); `finished_run` turns them back on, so one run checks them.
FAST = ["--set", "model.backbones=[test_resnet,test_efficientnet]", "--set", "data.image_size=64",
        "--set", "train.epochs=20", "--set", "train.patience=5", "--set", "fallback=null",
        "--set", "evaluation.saliency_images=0"]


def mtl(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "mtl_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory) -> dict[str, str]:
    """A private cache folder for the session's runs."""
    return {"MTL_CACHE_DIR": str(tmp_path_factory.mktemp("mtl-cache")), "MTL_WEIGHTS_DIR": ""}


@pytest.fixture(scope="session")
def phantom(tmp_path_factory, cache_env) -> Path:
    """A 64-pixel phantom in the Kaggle layout, made through the CLI."""
    out = tmp_path_factory.mktemp("phantom") / "jsrt"
    done = mtl("synthesize", "jsrt_res_mtnet", str(out), "--option", "size=64", env=cache_env)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, phantom, cache_env) -> tuple[Path, subprocess.CompletedProcess]:
    """One complete `mtl run` on the phantom."""
    out = tmp_path_factory.mktemp("runs") / "run"
    done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *FAST,
               "--set", "evaluation.saliency_images=2", env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done
