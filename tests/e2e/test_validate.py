"""`mtl validate` through the real command: the checks of `mtl run` up to extraction, on the JSRT example.

The full table of refused inputs is in tests/core/workflow/test_checks.py (in-process, on the shapes example); here
the command itself, on the paper's example and its phantom: one `error:` line, exit code 2, and a run that stops
with the same line before anything is extracted.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .conftest import EXAMPLE, FAST, mtl


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_validate_checks_the_data_it_is_given_and_generates_nothing(phantom, tmp_path):
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    done = mtl("validate", str(EXAMPLE), "--data", str(phantom), *FAST, env=env)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "ok: plugin 'jsrt_res_mtnet', 5 tasks (subtlety, state, position, diagnosis, location)" in done.stdout
    assert "backbones test_resnet, test_efficientnet at 64 px, pooling map" in done.stdout
    assert f"cases in {phantom}, one held-out split" in done.stdout
    without = mtl("validate", str(EXAMPLE), *FAST, "--set", "data.path=", env=env)
    assert without.returncode == 0 and "data: not checked" in without.stdout, without.stderr[-1500:]
    assert not _files(tmp_path / "cache" / "synthetic") and not _files(tmp_path / "cache" / "features")


def test_more_folds_than_cases_is_refused_by_validate_and_by_run_before_extraction(phantom, tmp_path):
    """Before, a run found out only after extracting every image's features."""
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    bad = [*FAST, "--folds", "5000"]
    checked = mtl("validate", str(EXAMPLE), "--data", str(phantom), *bad, env=env)
    ran = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(tmp_path / "out"), *bad, env=env)
    for refused in (checked, ran):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-1500:]
    assert _errors(checked.stderr) == _errors(ran.stderr)
    assert len(_errors(ran.stderr)) == 1 and "folds must be between 2 and the number of cases" in ran.stderr
    assert "got 5000" in ran.stderr
    assert not _files(tmp_path / "cache" / "features") and not (tmp_path / "out").exists()


def test_every_mistake_of_a_config_file_is_listed_on_one_line(tmp_path):
    config = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    config["train"].update(lr=-1, epoch=3)
    config["model"]["backbones"] = []
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = mtl("validate", str(path), "--set", "loss.strategy", env={"MTL_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = _errors(done.stderr)
    assert line.startswith(f"error: {path}: 4 problems: override 'loss.strategy' is not of the form key.sub=value")
    for key in ("model.backbones: List should have at least 1 item", "train.lr: Input should be greater than 0",
                "train.epoch: Extra inputs are not permitted (got 3), remove it or check its spelling"):
        assert key in line
