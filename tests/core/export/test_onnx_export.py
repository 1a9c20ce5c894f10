"""`mtl export` on a run folder that `save_run` wrote from a library model with every built-in task kind (a point
task on feature maps) and an out-of-distribution check: the graph run by onnxruntime gives what `mtl predict`
gives, its metadata alone decodes its outputs, its batch axis is dynamic, and what it cannot express is refused."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from PIL import Image

from mtl_core import (
    BackboneFusion,
    BinaryTask,
    ClassificationTask,
    MultiTaskModel,
    PointTask,
    RegressionTask,
    ResidualSharedTrunk,
    save_run,
)
from mtl_core.cli.app import main
from mtl_core.data import load_image_tensor
from mtl_core.evaluate import DistanceCheck
from mtl_core.export import ExportError, export_onnx, kind_export, load_onnx
from mtl_core.io import read_image
from mtl_core.tasks import register_task_kind

CLASSES = ["benign", "malignant", "non_nodule"]
#: the largest differences a correct export shows (float32 in both engines, other kernels)
PROBABILITY_TOL, VALUE_TOL, POINT_TOL_PX = 1e-4, 1e-3, 0.5


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run folder of an untrained model over one tiny random backbone (export has to carry the outputs
    faithfully, not to be accurate), its exported graph, and four images of two sizes."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tasks = [ClassificationTask("state", classes=CLASSES), RegressionTask("age", unit="years", bounds=(0, None)),
             BinaryTask("calcified", classes=["no", "yes"]),
             PointTask("nodule", frame=(64, 64), unit="px", extent="size", extent_unit="mm")]
    tasks[0].fit(rng.integers(0, 3, 20).astype(float))
    tasks[1].fit(rng.uniform(20, 80, 20))
    tasks[2].fit(rng.integers(0, 2, 20).astype(float))
    tasks[3].fit(np.column_stack([rng.uniform(4, 60, 20), rng.uniform(4, 60, 20), rng.uniform(5, 30, 20)]))
    fusion = BackboneFusion(["test_resnet"], weights="random", image_size=32, pooling="map", map_size=8,
                            map_levels=1)
    trunk = ResidualSharedTrunk(2 * fusion.map_shape[0], hidden=16, depth=1)
    model = MultiTaskModel(fusion, trunk, tasks, map_shape=fusion.map_shape).eval()
    folder = save_run(root / "run", model, tasks)
    embedding = torch.randn(30, trunk.fc1[1].in_features)
    DistanceCheck.fit(embedding[:20], embedding[20:], k=3).save(folder / "ood.safetensors")
    images = []
    for i, side in enumerate((32, 32, 48, 40)):
        images.append(root / f"case {i}.png")
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(images[-1])
    assert main(["export", str(folder)]) == 0
    return folder, images


def _csv(capsys, folder, images, *engine: str) -> pd.DataFrame:
    code = main(["predict", str(folder), *map(str, images), "--format", "csv", *engine])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return pd.read_csv(io.StringIO(captured.out))


def test_onnx_engine_gives_the_pytorch_engines_table(saved, capsys):
    folder, images = saved
    torch_frame = _csv(capsys, folder, images)
    onnx_frame = _csv(capsys, folder, images, "--engine", "onnx")
    assert list(onnx_frame.columns) == list(torch_frame.columns)
    assert (onnx_frame[["image", "state", "calcified"]] == torch_frame[["image", "state", "calcified"]]).all().all()
    for column, tol in [("state_prob", PROBABILITY_TOL), ("calcified_prob", PROBABILITY_TOL),
                        ("nodule_presence", PROBABILITY_TOL), ("age", VALUE_TOL), ("size", VALUE_TOL),
                        ("x", POINT_TOL_PX), ("y", POINT_TOL_PX), ("out_of_distribution_score", 1e-3)]:
        gap = np.abs(onnx_frame[column] - torch_frame[column]).max()
        assert gap <= tol, f"{column}: ONNX and PyTorch differ by {gap} (> {tol})"
    assert main(["predict", str(folder), *map(str, images), "--format", "table", "--engine", "onnx"]) == 0
    assert "age (years)" in capsys.readouterr().out


def test_metadata_alone_decodes_the_outputs(saved, capsys):
    """A consumer with onnxruntime and the metadata, nothing of mtl_core: reads the image contract, feeds a batch,
    and names classes and units from the task entries."""
    folder, images = saved
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    image = json.loads(meta["mtl.image"])
    tasks = {t["name"]: t for t in json.loads(meta["mtl.tasks"])}
    assert image["size"] == [32, 32] and image["range"] == [0.0, 1.0] and "255" in image["bit_depth"]
    assert tasks["state"]["classes"] == CLASSES and tasks["calcified"]["classes"] == ["no", "yes"]
    assert tasks["age"]["unit"] == "years" and tasks["nodule"]["component_units"] == ["px", "px", "mm"]
    batch = np.stack([load_image_tensor(p, read_image, 32).numpy() for p in images])  # (4, 1, 32, 32): dynamic batch
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(names, {image["input"]: batch}), strict=True))
    probs = out["state.probabilities"]
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    decoded = [tasks["state"]["classes"][i] for i in probs.argmax(axis=1)]
    expected = _csv(capsys, folder, images)
    assert decoded == expected["state"].tolist()
    assert np.abs(out["age.value"] - expected["age"]).max() <= VALUE_TOL
    point = dict(zip(tasks["nodule"]["components"], out["nodule.point"].T, strict=True))
    assert np.abs(point["x"] - expected["x"]).max() <= POINT_TOL_PX
    assert out["nodule.heatmap"].shape == (4, 8, 8)


def test_export_refuses_a_kind_it_cannot_decode_naming_the_task(saved, tmp_path):
    @register_task_kind
    @dataclass
    class OrdinalTask(RegressionTask):  # a plugin's kind with no export registered
        kind: ClassVar[str] = "ordinal_for_export_test"

        class Schema(RegressionTask.Schema):
            kind: Literal["ordinal_for_export_test"]

    task = OrdinalTask("grade")
    task.fit(np.arange(5.0))
    fusion = BackboneFusion(["test_resnet"], weights="random", image_size=32)
    model = MultiTaskModel(fusion, ResidualSharedTrunk(fusion.num_features, hidden=8), [task]).eval()
    with pytest.raises(ExportError, match="task 'grade' is of kind 'ordinal_for_export_test'"):
        export_onnx(model, [task], tmp_path / "m.onnx", image_size=32)
    assert not (tmp_path / "m.onnx").exists()

    class OwnDecoding(ClassificationTask):
        def decode(self, output):
            return output.argmin(dim=1).numpy().astype(float)

    with pytest.raises(ExportError, match="task 'odd'.*decodes its outputs its own way"):
        kind_export(OwnDecoding("odd", classes=["a", "b"]))


def test_bad_input_is_one_line(saved, tmp_path, capsys):
    folder, images = saved
    assert main(["predict", str(folder), str(images[0]), "--engine", "onnx", "--onnx", str(tmp_path / "none.onnx")]) \
        == 2
    assert "mtl export" in capsys.readouterr().err
    assert main(["predict", str(folder), str(images[0]), "--engine", "onnx", "--format", "json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "a file").write_text("")
    assert main(["explain", str(folder), str(images[0]), "--task", "nodule", "--output", str(tmp_path / "a file")]) \
        == 2
    assert capsys.readouterr().err.startswith("error: cannot write")
    assert main(["explain", str(folder), str(images[0]), "--task", "nodule", "--output", str(tmp_path / "maps")]) == 0
    assert "\tnodule\theatmap\theatmap\t" in capsys.readouterr().out
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(Exception, match="not an ONNX model"):
        load_onnx(tmp_path / "junk.onnx")
