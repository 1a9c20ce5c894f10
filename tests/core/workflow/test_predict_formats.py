"""`mtl predict` for machines and people, on a run folder that `save_run` wrote from a library model: CSV with one
column per value that pandas reads as numbers (units beside it), JSON as before, an aligned table; and what
save_run refuses."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mtl_core import (
    BackboneFusion,
    BinaryTask,
    ClassificationTask,
    MTLError,
    MultiTaskModel,
    PointTask,
    RegressionTask,
    ResidualSharedTrunk,
    load_run,
    predict,
    save_run,
)
from mtl_core.cli.app import main
from mtl_core.evaluate import DistanceCheck

# a class name with a comma, one with a quote and one a spreadsheet would run as a formula
CLASSES = ["fibroblast, spindle", 'say "hi"', "=HYPERLINK(1)"]
COLUMNS = ["image", "cell_type", "cell_type_prob", "count", "dividing", "dividing_prob", "x", "y", "size",
           "nucleus_presence", "out_of_distribution", "out_of_distribution_score"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model over tiny random backbones (untrained: predict only has to carry its outputs faithfully), saved with
    an out-of-distribution check, and three PNG images."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tasks = [ClassificationTask("cell_type", classes=CLASSES), RegressionTask("count", unit="cells"),
             BinaryTask("dividing"), PointTask("nucleus", frame=(32, 32), extent="size", extent_unit="um")]
    tasks[0].fit(rng.integers(0, 3, 20).astype(float))
    tasks[1].fit(rng.uniform(0, 9, 20))
    tasks[2].fit(rng.integers(0, 2, 20).astype(float))
    tasks[3].fit(np.column_stack([rng.uniform(4, 28, 20), rng.uniform(4, 28, 20), rng.uniform(1, 5, 20)]))
    fusion = BackboneFusion(["test_resnet"], weights="random", image_size=32, pooling="map", map_size=4,
                            map_levels=1)
    trunk = ResidualSharedTrunk(2 * fusion.map_shape[0], hidden=16, depth=1)
    model = MultiTaskModel(fusion, trunk, tasks, map_shape=fusion.map_shape).eval()
    folder = save_run(root / "run", model, tasks)
    images = []
    for i in range(3):
        images.append(root / f"cell {i}.png")  # a space in the name
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(images[-1])
    embedding = torch.randn(30, trunk.fc1[1].in_features)
    DistanceCheck.fit(embedding[:20], embedding[20:], k=3).save(folder / "ood.safetensors")
    return folder, images, model, tasks


def _predict(capsys, *args: str) -> str:
    code = main(["predict", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_csv_is_one_numeric_column_per_value(saved, capsys):
    folder, images, _, _ = saved
    text = _predict(capsys, str(folder), *map(str, images), "--format", "csv")
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns) == COLUMNS and len(frame) == len(images)
    assert frame["image"].tolist() == [str(p) for p in images]
    numbers = [c for c in COLUMNS if c not in ("image", "cell_type", "dividing")]
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in numbers), frame.dtypes
    assert frame[["cell_type_prob", "dividing_prob", "nucleus_presence"]].stack().between(0, 1).all()
    assert set(frame["out_of_distribution"]) <= {0, 1}
    assert (frame["out_of_distribution"] == (frame["out_of_distribution_score"] > 1)).all()
    # RFC 4180: the class names come back whole; the formula is neutralised with a leading quote
    names = {f"'{c}" if c.startswith("=") else c for c in CLASSES}
    assert set(frame["cell_type"]) <= names
    rows = list(csv.reader(io.StringIO(text)))
    assert {len(r) for r in rows} == {len(COLUMNS)}


def test_csv_values_are_the_json_values_and_the_models(saved, capsys):
    folder, images, model, tasks = saved
    frame = pd.read_csv(io.StringIO(_predict(capsys, str(folder), *map(str, images), "--format", "csv")))
    rows = json.loads(_predict(capsys, str(folder), *map(str, images), "--format", "json"))
    assert [r["image"] for r in rows] == [str(p) for p in images]
    for row, (_, line) in zip(rows, frame.iterrows(), strict=True):
        assert row["count"]["unit"] == "cells" and line["count"] == pytest.approx(row["count"]["prediction"], abs=1e-3)
        assert line["cell_type_prob"] == pytest.approx(row["cell_type"]["probability"], abs=1e-4)
        assert row["nucleus"]["size_unit"] == "um"
        assert (line["x"], line["y"], line["size"]) == pytest.approx(
            (row["nucleus"]["x"], row["nucleus"]["y"], row["nucleus"]["size"]), abs=0.05)
        assert line["out_of_distribution_score"] == pytest.approx(row["out_of_distribution"]["score"], abs=1e-3)
    expected = predict(load_run(folder), images)  # the library call gives the same frame
    assert expected.attrs["units"]["count"] == "cells"
    assert np.allclose(expected["count"], frame["count"]) and np.allclose(expected["x"], frame["x"])


def test_csv_output_file_and_its_units_sidecar(saved, capsys, tmp_path):
    folder, images, _, _ = saved
    target = tmp_path / "predictions.csv"
    assert _predict(capsys, str(folder), str(images[0]), "--format", "csv", "--output", str(target)) == ""
    assert len(pd.read_csv(target)) == 1
    units = pd.read_csv(tmp_path / "predictions.units.csv", keep_default_na=False)
    assert units["column"].tolist() == COLUMNS
    unit = dict(zip(units["column"], units["unit"], strict=True))
    assert (unit["count"], unit["x"], unit["size"], unit["cell_type"], unit["cell_type_prob"]) == (
        "cells", "", "um", "class", "probability")


def test_table_is_aligned_with_units_in_the_header(saved, capsys):
    folder, images, _, _ = saved
    lines = _predict(capsys, str(folder), *map(str, images), "--format", "table").splitlines()
    assert len(lines) == 2 + len(images)
    header = lines[0]
    assert "count (cells)" in header and "size (um)" in header and "cell_type_prob" not in header
    assert set(lines[1]) == {"-", " "}
    starts = [i for i, c in enumerate(lines[1]) if c == "-" and (i == 0 or lines[1][i - 1] == " ")]
    for line in lines[2:]:  # every column starts where the header's rule does
        assert all(line[s - 2:s] == "  " for s in starts[1:]), line
    assert all(line.startswith(str(p)) for line, p in zip(lines[2:], images, strict=True))
    assert all(("(YES" in line or "no (" in line) for line in lines[2:])


def test_save_run_refuses_what_predict_could_not_read(saved, tmp_path):
    _, _, model, tasks = saved
    with pytest.raises(MTLError, match="tasks given to save_run"):
        save_run(tmp_path / "a", model, tasks[:2])
    with pytest.raises(MTLError, match="both the held-out outputs and their targets"):
        save_run(tmp_path / "b", model, tasks, outputs={t.name: torch.zeros(1) for t in tasks})
    outputs = {t.name: torch.zeros(2, t.out_features) for t in tasks}
    with pytest.raises(MTLError, match="held-out part needs"):  # a target missing: refused before writing
        save_run(tmp_path / "d", model, tasks, outputs=outputs, targets={"count": np.zeros(2)})
    assert not (tmp_path / "d").exists()
    bare = MultiTaskModel(None, model.trunk, tasks, map_shape=model.map_shape)
    with pytest.raises(MTLError, match="needs the model's backbones"):
        save_run(tmp_path / "c", bare, tasks)


def test_bad_images_are_one_line(saved, capsys, tmp_path):
    folder, _, _, _ = saved
    (tmp_path / "not.png").write_text("no image")
    assert main(["predict", str(folder), str(tmp_path / "not.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_save_run_writes_a_new_folder_or_its_own_again(saved, tmp_path):
    folder, _, model, tasks = saved
    with pytest.raises(MTLError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "notes.txt").write_text("mine")
        save_run(tmp_path / "full", model, tasks)
    other = tmp_path / "other"
    save_run(other, model, tasks)
    (other / "ood.safetensors").write_bytes((folder / "ood.safetensors").read_bytes())
    (other / "case.png").write_bytes(b"kept")
    save_run(other, model, tasks)  # its own folder again: a stale check of another model goes, images stay
    assert not (other / "ood.safetensors").exists() and (other / "case.png").read_bytes() == b"kept"
    marker = json.loads((other / ".mtl-folder.json").read_text())
    assert marker["written_by"] == "mtl_core.save_run"
    (other / ".mtl-folder.json").write_text(json.dumps(marker | {"written_by": "mtl run"}))  # as `mtl run` marks it
    with pytest.raises(MTLError, match="holds the output of mtl run"):
        save_run(other, model, tasks)
    save_run(other, model, tasks, overwrite=True)  # the way out: its own files replaced, the image kept
    assert (other / "case.png").read_bytes() == b"kept"
    with pytest.raises(MTLError, match="is a file"):
        save_run(other / "case.png", model, tasks)
