"""`localisation`: the nodule as one point task (default) or as the paper's three scalar regression tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_core import PointTask, RegressionTask
from mtl_core.plugins import load_plugin

HEADER = ["study_id", "subtlety", "size", "age", "gender", "x", "y", "state", "position", "diagnosis"]
ROWS = [
    ["JPCLN001.png", "3", "15", "50", "Male", "1634", "692", "malignant", "l.upper lobe", "lung cancer"],
    ["JPCLN002.png", "4", "22", "61", "Female", "412", "1301", "benign", "r.lower lobe", "hamartoma"],
    ["JPCNN001.png", "", "", "?", "Female", "", "", "non-nodule", "", ""],
]


@pytest.fixture
def folder(tmp_path, write_png) -> Path:
    (tmp_path / "images").mkdir()
    for i, row in enumerate(ROWS):
        write_png(tmp_path / "images" / row[0], seed=i, size=16)
    pd.DataFrame(ROWS, columns=HEADER).to_csv(tmp_path / "jsrt_metadata.csv", index=False)
    return tmp_path


def test_point_localisation_is_one_task_with_x_y_and_size(folder):
    plugin = load_plugin("jsrt_res_mtnet", {"weights": {"location": 2.0}})
    tasks = plugin.tasks()
    assert [t.name for t in tasks] == ["subtlety", "state", "position", "diagnosis", "location"]
    location = tasks[-1]
    assert isinstance(location, PointTask) and location.spatial and location.weight == 2.0
    assert (location.frame, location.axes, location.extent, location.unit, location.extent_unit) == (
        (2048.0, 2048.0), ("x", "y"), "size", "px", "mm")
    assert location.extent_scale == pytest.approx(1 / 0.175)  # a hit: within one diameter, 0.175 mm per pixel
    records = plugin.load_records(folder)
    records.validate(tasks)
    np.testing.assert_array_equal(records.targets["location"], [[1634, 692, 15], [412, 1301, 22], [np.nan] * 3])
    location.fit(records.targets["location"])
    assert location.encode(records.targets["location"])[1].tolist() == [True, True, True]  # the chest without one
    # teaches the heatmap where no nodule is


def test_regression_localisation_gives_the_papers_three_bounded_heads(folder):
    plugin = load_plugin("jsrt_res_mtnet", {"localisation": "regression"})
    tasks = plugin.tasks()
    assert [t.name for t in tasks] == ["subtlety", "state", "position", "diagnosis", "x", "y", "size"]
    x, y, size = tasks[-3:]
    assert all(isinstance(t, RegressionTask) and not t.spatial for t in (x, y, size))
    assert (x.unit, x.bounds, x.value_range, size.unit, size.bounds) == ("px", (0.0, 2048.0), 2048.0, "mm",
                                                                           (0.0, None))
    records = plugin.load_records(folder)
    records.validate(tasks)
    np.testing.assert_array_equal(records.targets["y"], [692, 1301, np.nan])
    np.testing.assert_array_equal(records.targets["size"], [15, 22, np.nan])
