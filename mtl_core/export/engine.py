"""Run an exported graph with onnxruntime and read its outputs from its metadata alone (``mtl predict --engine
onnx``): nothing of the run folder, the plugin or the task classes is needed to decode them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from .graph import IMAGE_INPUT, ONNX_FORMAT, OOD_OUTPUT
from .outputs import KIND_EXPORTS, Columns, ExportError


@dataclass
class OnnxModel:
    """An exported graph in an onnxruntime session, with its metadata read back.

    Attributes:
        path: the ``.onnx`` file.
        image: the image contract (``mtl.image``): size, channels, range, bit depth, resize, normalisation.
        tasks: the task entries (``mtl.tasks``): name, kind, outputs, classes or units, decoding.
        metadata: every metadata entry, as stored (strings).
    """

    path: Path
    image: dict[str, Any]
    tasks: list[dict[str, Any]]
    metadata: dict[str, str]
    session: Any

    @property
    def image_size(self) -> int:
        """The side of the square input the graph reads."""
        return int(self.image["size"][0])

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Images (B, C, S, S) float32 in [0, 1] -> {output name: array}."""
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, {IMAGE_INPUT: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(names, values, strict=True))


def load_onnx(path: Path, threads: int | None = None) -> OnnxModel:
    """Open an exported graph with onnxruntime on the CPU and read its metadata.

    Raises:
        RunError: the file is missing, not an ONNX graph, or not one that ``mtl export`` wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no exported model at {path}; write it first with `mtl export RUN_DIR --format onnx`")
    import onnxruntime as ort  # lazy: an optional dependency, needed only here

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
        raise RunError(f"{path} is not an ONNX model onnxruntime can load ({type(exc).__name__})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("mtl.format") != ONNX_FORMAT:
        raise RunError(f"{path} has metadata format {meta.get('mtl.format')!r}; this mtl_core reads {ONNX_FORMAT!r} "
                       f"(export it again with `mtl export`)")
    try:
        image, tasks = json.loads(meta["mtl.image"]), json.loads(meta["mtl.tasks"])
    except (KeyError, ValueError) as exc:
        raise RunError(f"{path}: damaged mtl metadata ({exc})") from None
    return OnnxModel(path, image, tasks, meta, session)


def onnx_columns(model: OnnxModel, outputs: dict[str, np.ndarray]) -> Columns:
    """The columns of ``mtl predict``'s table (and their units) from the graph's outputs, read with the metadata:
    per task its value column(s) and extra outputs, then the out-of-distribution flag and score."""
    columns: dict[str, Any] = {}
    units: dict[str, str] = {}
    for entry in model.tasks:
        if entry["kind"] not in KIND_EXPORTS:
            raise ExportError(f"{model.path}: task {entry['name']!r} has kind {entry['kind']!r}, which this mtl_core "
                              f"cannot read from a graph")
        prefix = f"{entry['name']}."
        arrays = {name.removeprefix(prefix): outputs[name] for name in entry["outputs"]}
        more, more_units = KIND_EXPORTS.get(entry["kind"]).columns(entry, arrays)
        columns |= more
        units |= more_units
    if OOD_OUTPUT in outputs:
        score = np.asarray(outputs[OOD_OUTPUT], np.float64)
        columns |= {"out_of_distribution": (score > 1.0).astype(int),
                    "out_of_distribution_score": np.round(score, 4)}
        units |= {"out_of_distribution": "1 = flagged", "out_of_distribution_score": "1 = threshold"}
    return columns, units
