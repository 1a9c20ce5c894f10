"""The model files of a run folder: ``model.json`` (what rebuilds the model) and ``model.safetensors`` (its
trained tensors), both stamped with the run-folder format :data:`RUN_FOLDER_FORMAT`, which is checked on read.

A run folder written by another version of the format is refused with one line rather than half-read.

Example:
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_run_model(folder, {"image_size": 32}, {"head.weight": torch.ones(2)})
    >>> read_run_model(folder).schema["image_size"]
    32
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from .files import contained, load_weights, read_json, save_weights, write_json

#: the format this mtl_core writes and reads (bump it when model.json or model.safetensors change incompatibly)
RUN_FOLDER_FORMAT = "mtl-run/1"
SCHEMA_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class RunModel:
    """The model files of a run folder, read back.

    Attributes:
        folder: the run folder.
        schema: ``model.json`` (plugin, image size, seed, model config, backbones, tasks), ``format`` included.
        state: the tensors of ``model.safetensors`` (heads, trunk, feature standardisation, trained backbones).
    """

    folder: Path
    schema: dict[str, Any]
    state: dict[str, torch.Tensor]

    @property
    def schema_file(self) -> Path:
        """Where ``schema`` was read from, for messages."""
        return self.folder / SCHEMA_FILE

    @property
    def weights_file(self) -> Path:
        """Where ``state`` was read from, for messages."""
        return self.folder / WEIGHTS_FILE


def write_run_model(folder: Path, schema: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Write ``model.safetensors`` then ``model.json`` into ``folder``, both stamped with
    :data:`RUN_FOLDER_FORMAT` (the first key of ``model.json``)."""
    folder = Path(folder)
    save_weights(folder / WEIGHTS_FILE, state, {"format": RUN_FOLDER_FORMAT})
    rest = {k: v for k, v in schema.items() if k != "format"}
    write_json(folder / SCHEMA_FILE, {"format": RUN_FOLDER_FORMAT} | rest)


def read_run_model(folder: Path) -> RunModel:
    """Read the model files of a finished run folder, refusing another format.

    Raises:
        RunError: the folder or a file is missing or unreadable, or its format is not :data:`RUN_FOLDER_FORMAT`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"run folder {folder} does not exist; give the --output folder of a finished `mtl run`")
    schema = read_json(run_file(folder, SCHEMA_FILE))
    if not isinstance(schema, dict):
        raise RunError(f"{folder / SCHEMA_FILE} is not a JSON object; is {folder} a run folder of `mtl run`?")
    check_run_format(folder, schema.get("format"), SCHEMA_FILE)
    state = load_weights(run_file(folder, WEIGHTS_FILE))
    check_run_format(folder, _weights_format(folder / WEIGHTS_FILE), WEIGHTS_FILE)
    return RunModel(folder, schema, state)


def run_file(folder: Path, name: str) -> Path:
    """``folder / name``, refused with one line when it is a symbolic link that leads out of ``folder``: a run's
    files are read from the run folder itself (:func:`~mtl_core.io.contained`, the one containment rule)."""
    path = Path(folder) / name
    if path.is_symlink() and not contained(path, folder):
        raise RunError(f"{path} is a symbolic link out of its run folder (to {os.readlink(path)}); mtl reads a "
                       f"run's files only from the run folder itself: copy the file there instead of linking it")
    return path


def check_run_format(folder: Path, found: object, file: str = SCHEMA_FILE) -> None:
    """Raise a one-line :class:`RunError` unless ``found`` (the format a file of ``folder`` declares) is
    :data:`RUN_FOLDER_FORMAT`."""
    if found == RUN_FOLDER_FORMAT:
        return
    if found is None:
        raise RunError(f"run folder {folder} has no format in {file}; this mtl_core reads {RUN_FOLDER_FORMAT!r}: "
                       f"write it again with `mtl run`")
    raise RunError(f"run folder {folder} has format {found!r}; this mtl_core reads {RUN_FOLDER_FORMAT!r}: use the "
                   f"mtl_core that wrote it, or write it again with `mtl run`")


def _weights_format(path: Path) -> str | None:
    """The ``format`` in the metadata of a safetensors file (already known to be valid)."""
    from safetensors import safe_open  # lazy: as load_weights, keeps `import mtl_core.io` light

    with safe_open(str(path), framework="pt") as fh:
        return (fh.metadata() or {}).get("format")
