"""Bad data folders: one line on stderr, exit code 2, no traceback, nothing written that looks like a result."""

from __future__ import annotations

import shutil

import pytest

from .conftest import EXAMPLE, FAST, mtl


def _copy(phantom, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantom, data)
    return data


def _edit_csv(data, fn):
    path = data / "jsrt_metadata.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def _break_image(data, how):
    target = sorted((data / "images").glob("*.png"))[3]
    if how == "truncate":
        target.write_bytes(target.read_bytes()[:200])
    elif how == "zero":
        target.write_bytes(b"")
    elif how == "text":
        target.write_text("this is not an image\n")
    elif how == "missing":
        target.unlink()
    return target.name


CASES = {
    "no metadata file": (lambda d: (d / "jsrt_metadata.csv").unlink(), "jsrt_metadata.csv"),
    "missing column": (lambda d: _edit_csv(d, lambda ls: [",".join(c for i, c in enumerate(line.split(","))
                                                                   if i != 7) for line in ls]), "state"),
    "unknown state": (lambda d: _edit_csv(d, lambda ls: [ls[0], ls[1].replace("malignant", "evil").replace(
        "benign", "evil")] + ls[2:]), "evil"),
    "unknown subtlety": (lambda d: _edit_csv(d, lambda ls: [ls[0], ",".join([ls[1].split(",")[0], "9"] +
                                                                           ls[1].split(",")[2:])] + ls[2:]), "9"),
    "image listed but missing": (lambda d: _break_image(d, "missing"), "JPC"),
    "truncated image": (lambda d: _break_image(d, "truncate"), ".png"),
    "zero-byte image": (lambda d: _break_image(d, "zero"), ".png"),
    "text file named png": (lambda d: _break_image(d, "text"), ".png"),
    "empty folder": (lambda d: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in list(d.iterdir())], "empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_folder(case, phantom, tmp_path, cache_env):
    breaker, culprit = CASES[case]
    data = _copy(phantom, tmp_path)
    breaker(data)
    out = tmp_path / "out"
    done = mtl("run", str(EXAMPLE), "--data", str(data), "--output", str(out), *FAST, env=cache_env)
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and culprit.lower() in errors[0].lower(), done.stderr[-1500:]
    assert not (out / "metrics.json").exists() and not (out / "predictions.csv").exists()


def test_missing_data_folder(tmp_path, cache_env):
    done = mtl("run", str(EXAMPLE), "--data", str(tmp_path / "nowhere"), *FAST, env=cache_env)
    assert done.returncode == 2 and "nowhere" in done.stderr and "Traceback" not in done.stderr


def test_unknown_backbone_suggests(tmp_path, phantom, cache_env):
    done = mtl("run", str(EXAMPLE), "--data", str(phantom), *FAST, "--set", "model.backbones=[densnet121]",
               env=cache_env)
    assert done.returncode == 2 and "did you mean" in done.stderr.lower() and "densenet121" in done.stderr


def test_point_task_on_pooled_features_is_refused_before_anything_is_extracted(tmp_path, phantom):
    """The nodule's point task reads feature maps: `validate` and `run` refuse pooling 'avg' at once, and the run
    stops before a single image is read (its cache folder stays empty)."""
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    pooled = [*FAST, "--set", "model.pooling=avg"]
    checked = mtl("validate", str(EXAMPLE), *pooled, env=env)
    done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(tmp_path / "out"), *pooled, env=env)
    for refused in (checked, done):
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-1500:]
        assert "task 'location' reads feature maps but model.pooling is 'avg'; set model.pooling to 'map'" in \
            refused.stderr
    assert not (tmp_path / "cache").exists() or not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
    regression = mtl("validate", str(EXAMPLE), *pooled, "--set", "plugin_options.localisation=regression", env=env)
    assert regression.returncode == 0, regression.stderr  # the paper's scalar x, y, size heads read pooled vectors
