"""The synthetic shapes data set: labels that match the pixels, byte-identical for a seed, reachable through
`mtl synthesize table` and, with the default tasks, through `mtl run`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtl_core.cli import main
from mtl_core.io import read_image
from mtl_core.plugins import load_plugin
from mtl_core.plugins.table.options import ShapesOptions
from mtl_core.plugins.table.shapes import write_shapes

BRIGHT = 0.6  # shapes are drawn at 0.7-0.95, the background stays below 0.5


def test_labels_describe_the_pixels(tmp_path):
    folder = write_shapes(tmp_path / "shapes", ShapesOptions(n=40, size=48, missing_fraction=0.0))
    table = pd.read_csv(folder / "labels.csv")
    assert list(table.columns) == ["id", "file", "subject", "shape", "count", "size_px"]
    for row in table.itertuples():
        bright = int((read_image(folder / "images" / row.file) > BRIGHT).sum())
        if row.shape == "none":
            assert (row.count, row.size_px, bright) == (0, 0, 0)
        else:
            assert 1 <= row.count <= 3 and bright > 0
            assert bright <= row.count * (row.size_px + 1) ** 2  # never more than count squares of that side
    assert set(table["shape"]) == {"none", "disc", "square", "triangle"}


def test_the_same_options_write_the_same_bytes_and_another_seed_does_not(tmp_path):
    def files(folder):
        return {p.name: p.read_bytes() for p in sorted((folder / "images").iterdir())}

    a = write_shapes(tmp_path / "a", ShapesOptions(n=12, size=32))
    b = write_shapes(tmp_path / "b", ShapesOptions(n=12, size=32))
    c = write_shapes(tmp_path / "c", ShapesOptions(n=12, size=32, seed=1))
    assert files(a) == files(b) and (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert files(a) != files(c)


def test_synthesize_writes_shapes_and_the_default_tasks_read_them(tmp_path, capsys):
    assert main(["synthesize", "table", str(tmp_path / "out"), "--option", "n=24", "--option", "size=32"]) == 0
    assert "wrote" in capsys.readouterr().out
    plugin = load_plugin("table")
    records = plugin.load_records(tmp_path / "out")
    records.validate(plugin.tasks())
    assert len(records) == 24
    shape, size = records.targets["shape"], records.targets["size"]
    none = shape == 0
    assert np.isnan(size[none]).all()  # the condition masks the 0 of empty images
    assert np.nanmin(size) >= 2.0  # pixels * 0.5 mm


def test_synthetic_data_only_where_it_makes_sense(tmp_path):
    assert load_plugin("table").synthetic_data(tmp_path / "a") is not None  # default tasks: the shapes data set
    own = load_plugin("table", {"tasks": {"v": {"kind": "regression"}}})
    assert own.synthetic_data(tmp_path / "b") is None  # tasks of your own: no generator, unless asked for
    assert own.synthetic_data(tmp_path / "c", kind="shapes", n=12) == tmp_path / "c"
