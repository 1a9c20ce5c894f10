"""Tests for mtl_core.io.run_folder: the model files of a run folder round-trip, carry the run-folder format, and a
folder of another (or no) format is refused with one line, by the library and by `mtl predict`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from mtl_core.errors import RunError
from mtl_core.io import RUN_FOLDER_FORMAT, read_run_model, save_weights, write_run_model

REPO = Path(__file__).resolve().parents[3]
SCHEMA = {"plugin": "some_plugin", "image_size": 32, "seed": 0, "tasks": [{"name": "age", "kind": "regression"}]}


def _state() -> dict[str, torch.Tensor]:
    return {"heads.age.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "trunk.fc1.bias": torch.ones(2)}


def test_model_files_round_trip_with_the_format_first(tmp_path):
    write_run_model(tmp_path, SCHEMA, _state())
    saved = read_run_model(tmp_path)
    assert saved.schema == {"format": RUN_FOLDER_FORMAT} | SCHEMA
    assert list(json.loads((tmp_path / "model.json").read_text())) == ["format", *SCHEMA]
    assert saved.state.keys() == _state().keys()
    assert all(torch.equal(saved.state[k], v) for k, v in _state().items())
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "mtl-run/1"}


def test_a_format_given_in_the_schema_is_replaced_by_the_one_written(tmp_path):
    write_run_model(tmp_path, {"format": "mtl-run/0"} | SCHEMA, _state())
    assert read_run_model(tmp_path).schema["format"] == RUN_FOLDER_FORMAT


def _with_schema(folder: Path, schema: dict, weights_format: str | None = RUN_FOLDER_FORMAT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / "model.safetensors", _state(), None if weights_format is None else
                 {"format": weights_format})
    (folder / "model.json").write_text(json.dumps(schema))
    return folder


@pytest.mark.parametrize(("schema", "weights_format", "message"), [
    ({"format": "mtl-run/9"} | SCHEMA, RUN_FOLDER_FORMAT,
     r"run folder \S+ has format 'mtl-run/9'; this mtl_core reads 'mtl-run/1'"),
    (SCHEMA, RUN_FOLDER_FORMAT, r"run folder \S+ has no format in model.json; this mtl_core reads 'mtl-run/1'"),
    ({"format": RUN_FOLDER_FORMAT} | SCHEMA, "mtl-run/9",
     r"run folder \S+ has format 'mtl-run/9'; this mtl_core reads 'mtl-run/1'"),
    ({"format": RUN_FOLDER_FORMAT} | SCHEMA, None,
     r"run folder \S+ has no format in model.safetensors; this mtl_core reads 'mtl-run/1'"),
])
def test_another_or_no_format_is_refused_with_one_line(tmp_path, schema, weights_format, message):
    folder = _with_schema(tmp_path / "run", schema, weights_format)
    with pytest.raises(RunError, match=message) as caught:
        read_run_model(folder)
    assert "\n" not in str(caught.value)


def test_a_missing_folder_or_file_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="does not exist; give the --output folder"):
        read_run_model(tmp_path / "nowhere")
    with pytest.raises(RunError, match="model.json is missing"):
        read_run_model(tmp_path)
    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="is not a JSON object"):
        read_run_model(tmp_path)


def test_mtl_predict_refuses_a_run_folder_of_another_format_in_one_line(tmp_path, write_png):
    folder = _with_schema(tmp_path / "run", {"format": "mtl-run/9"} | SCHEMA)
    image = write_png(tmp_path / "x.png", seed=0)
    done = subprocess.run([sys.executable, "-m", "mtl_core.cli", "predict", str(folder), str(image)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"error: run folder {folder} has format 'mtl-run/9'; this mtl_core reads 'mtl-run/1': use the "
                     f"mtl_core that wrote it, or write it again with `mtl run`"], done.stderr
