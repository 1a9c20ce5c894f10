"""`mtl_core.run` from Python is `mtl run`: the same run folder byte for byte, and a result that holds what the
folder holds (metrics, predictions, the report) and predicts new images; bad input raises before anything is
written."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import mtl_core
from mtl_core import ConfigError, load_config

from .conftest import REPO, mtl

SHAPES = REPO / "examples" / "shapes"
SMALL = {"plugin_options.synthetic.n": 48, "train.epochs": 3, "data.image_size": 32}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, cache_env):
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cache_env.items():
            patch.setenv(key, value)
        out = tmp_path_factory.mktemp("api") / "run"
        said: list[str] = []
        return mtl_core.run(SHAPES, output=out, overrides=SMALL, say=said.append), said


def test_run_writes_what_mtl_run_writes(api_run, cache_env, tmp_path):
    result, said = api_run
    cli = tmp_path / "cli"
    done = mtl("run", str(SHAPES), "--output", str(cli), *[f"--set={k}={v}" for k, v in SMALL.items()], env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("predictions.csv", "split.json", "model.safetensors", "model.json", "config.yaml"):
        assert (result.folder / name).read_bytes() == (cli / name).read_bytes(), name
    assert any("RANDOM INITIALISATION" in line for line in said)  # the run's notes reach the caller's `say`


def test_result_holds_the_run_folder(api_run):
    result, _ = api_run
    saved = json.loads((result.folder / "metrics.json").read_text())
    assert list(result.metrics["tasks"]) == list(saved["tasks"]) == ["shape", "count", "size"]
    assert result.metrics["tasks"]["count"]["metrics"]["mae"] == pytest.approx(
        saved["tasks"]["count"]["metrics"]["mae"])
    table = pd.read_csv(result.folder / "predictions.csv")
    assert list(result.predictions.columns) == list(table.columns) and len(result.predictions) == len(table)
    assert result.predictions["id"].astype(str).tolist() == table["id"].astype(str).tolist()
    assert result.report == result.folder / "report.html" and result.report.is_file()
    assert "count" in result.table
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.folder = Path("elsewhere")  # type: ignore[misc]


def test_result_predicts_new_images(api_run):
    result, _ = api_run
    images = sorted(Path(result.metrics["run"]["data"]).rglob("*.png"))[:2]
    frame = result.predict(images)
    assert list(frame.columns) == ["image", "shape", "shape_prob", "count", "size", "out_of_distribution",
                                   "out_of_distribution_score"]
    assert len(frame) == 2 and frame.attrs["units"]["size"] == "mm" and frame.attrs["units"]["count"] == "shapes"
    assert result.load().image_size == 32


def test_bad_input_raises_one_line_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        mtl_core.run(tmp_path / "nowhere", output=tmp_path / "out")
    with pytest.raises(ConfigError, match="train.epochs") as caught:
        mtl_core.run(load_config(SHAPES), output=tmp_path / "out", overrides=["train.epochs=many"])
    assert "\n" not in str(caught.value)
    with pytest.raises(mtl_core.MTLError, match="mapping or a list"):
        mtl_core.run(SHAPES, output=tmp_path / "out", overrides="train.epochs=3")
    assert not (tmp_path / "out").exists()


def test_python_api_page_runs_as_written(tmp_path, cache_env, monkeypatch, capsys):
    """docs/python-api.md's examples, run from a folder that has the repository's examples (the save_run one is
    the end of the README's example, which tests/test_readme.py runs)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python-api.md").read_text(), re.S)
    runnable = [b for b in blocks if "save_run(" not in b]
    assert len(runnable) == 2 and len(blocks) == 3
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs"}
    for block in runnable:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)
    assert namespace["result"].folder == Path("runs/shapes") and namespace["mae"] >= 0
    frame, rows = namespace["frame"], namespace["rows"]
    assert len(frame) == len(rows) == 3 and frame.attrs["units"]["count"] == "shapes"
    assert [r["count"]["prediction"] for r in rows] == pytest.approx(frame["count"].tolist(), abs=1e-3)
    assert str(Path("runs/shapes/report.html")) in capsys.readouterr().out
