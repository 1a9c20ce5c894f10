"""A fine-tuned `shapes` run (table plugin) and the frozen JSRT phantom run (a plugin with a point task on feature
maps), exported to ONNX and explained: both engines give the same table, the exported graph matches the PyTorch
outputs, and Grad-CAM for the number of shapes lies on the shapes, not on the background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mtl_core
from mtl_core.cli.app import main
from mtl_core.workflow.deploy import export_run, predict_with
from mtl_core.workflow.explaining import maps_for

#: a fine-tuned small CNN learns where the shapes are in seconds; Grad-CAM reads its 4 x 4 last map at 64 px
SHAPES = ["model.backbones=[mtl_small_cnn]", "model.frozen=false", "model.pooling=avg", "train.epochs=8",
          "plugin_options.synthetic.n=240", "evaluation.saliency_images=2"]
#: the saliency region: the top 15 % of the map's pixels (chance covers 15 % of a shape)
TOP, CHANCE = 0.15, 0.15


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, cache_env):
    out = tmp_path_factory.mktemp("shapes") / "run"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cache_env.items():
            patch.setenv(key, value)
        result = mtl_core.run(Path(mtl_core.__file__).parents[1] / "examples" / "shapes", output=out,
                              overrides=SHAPES)
        yield result


def _held_out_single_shapes(result, limit: int = 12) -> list[Path]:
    """Held-out images with exactly one shape (its mask is the one bright region)."""
    folder = Path(result.metrics["run"]["data"])
    labels = pd.read_csv(folder / "labels.csv").set_index("id")
    ids = [i for i in result.predictions["id"] if labels.at[i, "count"] == 1][:limit]
    return [folder / "images" / labels.at[i, "file"] for i in ids]


def _shape_mask(image: np.ndarray) -> np.ndarray:
    """The shapes' pixels: drawn at 0.7-0.95 over a background of 0.25 +/- 0.1 with noise of std 0.04."""
    return np.asarray(image).reshape(image.shape[-2:]) > 0.55


def test_gradcam_of_the_count_lies_on_the_shape(shapes_run, cache_env, monkeypatch):
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    run = shapes_run.load()
    recalls = []
    for path in _held_out_single_shapes(shapes_run):
        image, found = maps_for(run, path, "count")
        mask = _shape_mask(image)
        top = found.map >= np.quantile(found.map, 1 - TOP)
        recalls.append((top & mask).sum() / mask.sum())
    assert len(recalls) >= 6
    print(f"shape pixels inside the top {TOP:.0%} of Grad-CAM (count), {len(recalls)} images: mean "
          f"{np.mean(recalls):.2f}, median {np.median(recalls):.2f} (chance {CHANCE:.2f})")
    assert np.mean(recalls) >= 3 * CHANCE and np.median(recalls) >= 3 * CHANCE, recalls


def test_fine_tuned_run_exports_and_both_engines_agree(shapes_run, cache_env, monkeypatch, capsys):
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    images = _held_out_single_shapes(shapes_run, 4)
    export_run(shapes_run.folder)
    tables = {}
    for engine in ("torch", "onnx"):
        assert main(["predict", str(shapes_run.folder), *map(str, images), "--format", "table", "--engine", engine]) \
            == 0
        tables[engine] = capsys.readouterr().out
    assert tables["onnx"].splitlines()[0] == tables["torch"].splitlines()[0]  # the same columns and units
    torch_frame = predict_with(shapes_run.folder, images, "torch").frame
    onnx_frame = predict_with(shapes_run.folder, images, "onnx").frame
    assert (torch_frame["shape"] == onnx_frame["shape"]).all()
    assert np.abs(torch_frame["shape_prob"] - onnx_frame["shape_prob"]).max() <= 1e-4
    assert np.abs(torch_frame[["count", "size"]] - onnx_frame[["count", "size"]]).max().max() <= 1e-3


def test_report_and_explain_show_overlays(shapes_run, cache_env, monkeypatch, tmp_path, capsys):
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    html = (shapes_run.folder / "report.html").read_text()
    assert "Where the model looked" in html and html.count("map of") >= 2 * 3  # 2 images x 3 tasks
    assert len(list((shapes_run.folder / "figures").glob("saliency_count_*.png"))) == 2
    images = _held_out_single_shapes(shapes_run, 2)
    assert main(["explain", str(shapes_run.folder), *map(str, images), "--task", "shape", "--class", "disc",
                 "--method", "gradcampp", "--output", str(tmp_path / "maps")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("\tdisc\tgradcampp\t" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(f"{p.stem}.shape.png" for p in images)
    assert main(["explain", str(shapes_run.folder), str(images[0]), "--task", "count", "--class", "disc",
                 "--output", str(tmp_path / "maps")]) == 2
    assert "without classes" in capsys.readouterr().err


def test_frozen_plugin_run_with_a_point_task_exports(finished_run, phantom, cache_env, monkeypatch, tmp_path):
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    run_dir, _ = finished_run
    target = export_run(run_dir, tmp_path / "jsrt.onnx")
    images = sorted((phantom / "images").glob("*.png"))[:3]
    torch_frame = predict_with(run_dir, images, "torch").frame
    onnx_frame = predict_with(run_dir, images, "onnx", target).frame
    assert list(onnx_frame.columns) == list(torch_frame.columns)
    numbers = [c for c in torch_frame.columns if pd.api.types.is_numeric_dtype(torch_frame[c])]
    point = [c for c in ("x", "y") if c in numbers]
    assert point, f"the phantom run has a point task: {list(torch_frame.columns)}"
    assert np.abs(torch_frame[point] - onnx_frame[point]).max().max() <= 0.5  # px
    rest = [c for c in numbers if c not in point]
    assert np.abs(torch_frame[rest] - onnx_frame[rest]).max().max() <= 1e-3
    strings = [c for c in torch_frame.columns if c not in numbers]
    assert (torch_frame[strings] == onnx_frame[strings]).all().all()
