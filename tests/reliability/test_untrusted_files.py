"""Untrusted files: nothing the project loads runs code, and patient identifiers never leave a DICOM.

A pickle that would create a marker file when unpickled is handed to `mtl predict` as a run's weights and to the
backbone loader as a foreign state dict: both refuse it and the marker never appears. A plugin named by a file path
inside a run folder is never imported. A DICOM with a patient's name, ID and birth date trains and predicts without
any of them reaching the console, the run folder or the cache.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from mtl_core.errors import RunError, WeightsError
from mtl_core.features.state_dicts import read_state_dict
from mtl_core.io import load_weights

from .conftest import IDENTIFIERS, REPO, error_lines

PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # a pickle, or torch.save's zip around one
SECRETS = [*IDENTIFIERS.values(), "Jane"]


class _Trap:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _trap(path: Path, marker: Path, how: str) -> Path:
    if how == "pickle":
        path.write_bytes(pickle.dumps({"trunk.fc1.weight": _Trap(marker)}))
    else:
        torch.save({"state_dict": _Trap(marker)}, path)
    return path


def test_the_trap_works(tmp_path):  # otherwise the tests below could not fail
    pickle.loads(_trap(tmp_path / "w", tmp_path / "ran", "pickle").read_bytes())
    assert (tmp_path / "ran").exists()


@pytest.fixture
def run_copy(quirky_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(quirky_run.out, copy)
    return copy


def test_predict_refuses_a_pickled_weights_file(run_copy, quirky_run, tmp_path, cache_env, mtl):
    marker = tmp_path / "code-ran"
    _trap(run_copy / "model.safetensors", marker, "pickle")
    image = quirky_run.data / "images" / quirky_run.studies["rgb"]
    done = mtl("predict", str(run_copy), str(image), env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (error,) = error_lines(done.stderr)
    assert "model.safetensors" in error and "refusing to load it" in error
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickled_files_are_refused_without_running_them(how, tmp_path):
    marker = tmp_path / "code-ran"
    with pytest.raises(RunError, match="refusing"):
        load_weights(_trap(tmp_path / "model.safetensors", marker, how))
    with pytest.raises(WeightsError, match="cannot read weights file"):  # a foreign state dict: weights_only
        read_state_dict(_trap(tmp_path / "backbone.pth", marker, how))
    assert not marker.exists()


def test_a_plugin_path_in_a_run_folder_is_never_imported(run_copy, quirky_run, tmp_path, cache_env, mtl):
    marker = tmp_path / "plugin-ran"
    (run_copy / "evil_plugin.py").write_text(f"open({str(marker)!r}, 'w')\n")
    schema = json.loads((run_copy / "model.json").read_text())
    schema["plugin"] = f"{run_copy / 'evil_plugin.py'}:Evil"
    (run_copy / "model.json").write_text(json.dumps(schema))
    image = quirky_run.data / "images" / quirky_run.studies["rgb"]
    done = mtl("predict", str(run_copy), str(image), env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not marker.exists()


def test_run_folder_and_cache_hold_no_pickles(quirky_run, cache_env):
    from safetensors import safe_open

    for path in (p for p in quirky_run.out.rglob("*") if p.is_file()):
        assert path.suffix in {".json", ".csv", ".safetensors", ".md", ".yaml", ".png", ".svg", ".html"} or (
            path.name == ".mtl-folder.lock" and path.read_text().strip().isdigit()), path  # the lock: its holder's pid
        assert not path.read_bytes().startswith(PICKLE_MAGIC), path
    features = [p for p in (Path(cache_env["MTL_CACHE_DIR"]) / "features").rglob("*") if p.is_file()]
    assert features and all(p.suffix == ".safetensors" for p in features)
    for path in features:
        with safe_open(str(path), framework="pt") as fh:
            json.loads(fh.metadata()["digests"])


def _source_lines():
    for path in sorted([*(REPO / "mtl_core").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield f"{path.relative_to(REPO)}:{number}: {line.strip()}", line


def test_every_torch_load_is_weights_only():
    """No torch.load without weights_only=True; no joblib, pandas pickles, unsafe YAML, NumPy pickles."""
    unsafe = re.compile(r"joblib\.load|read_pickle|yaml\.load\(|yaml\.unsafe_load|allow_pickle=True|torch\.jit\.load"
                        r"|dill\.|shelve\.|marshal\.loads?")
    for where, line in _source_lines():
        if "yaml.load(" in line and "Loader=_BoundedLoader" in line:  # the config loader: a SafeLoader (below)
            continue
        assert not unsafe.search(line), where
        if "torch.load(" in line:
            assert "weights_only=True" in line, where


def test_the_config_loader_is_a_safe_loader():
    import yaml

    from mtl_core.config import loading

    assert issubclass(loading._BoundedLoader, yaml.SafeLoader)


def test_nothing_calls_pickle_load():
    assert not [where for where, line in _source_lines() if re.search(r"\bpickle\.loads?\(|Unpickler\(", line)]


def test_dicom_identifiers_never_leave_the_dicom(quirky_run, cache_env, mtl):
    dicom = quirky_run.data / "images" / Path(quirky_run.studies["dicom"]).with_suffix(".dcm")
    assert all(value.encode() in dicom.read_bytes() for value in IDENTIFIERS.values())  # they are there to leak
    predicted = mtl("predict", str(quirky_run.out), str(dicom), "--format", "json", env=cache_env)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout)[0]["state"]["prediction"]
    console = quirky_run.done.stdout + quirky_run.done.stderr + predicted.stdout + predicted.stderr
    stored = [p for root in (quirky_run.out, Path(cache_env["MTL_CACHE_DIR"])) for p in root.rglob("*")
              if p.is_file()]
    for secret in SECRETS:
        assert secret not in console, secret
        leaks = [p for p in stored if secret.encode() in p.read_bytes()]
        assert not leaks, (secret, leaks)
