"""Point tasks of the `table` plugin: x, y (and an extent) from columns, checked against the frame, row by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_core import ConfigError, DataError, PointTask
from mtl_core.plugins import load_plugin

LESION = {"kind": "point", "frame": [640, 480], "x_column": "col", "y_column": "row", "extent": "diameter",
          "extent_unit": "mm", "extent_scale": 2.0, "when": {"column": "lesion", "values": ["yes"]}}
ROWS = [  # id, lesion, col, row, diameter
    ("c1", "yes", "10", "20", "4.5"),
    ("c2", "yes", "640", "0", "?"),  # on the frame's edge; extent missing
    ("c3", "no", "", "", ""),  # no lesion: a negative
    ("c4", "no", "300", "200", "3"),  # the condition does not hold: everything ignored
    ("c5", "yes", "NA", "NA", "2"),  # a lesion without a location: missing, not a negative
    ("c6", "?", "1", "1", "1"),
]


@pytest.fixture
def folder(tmp_path, write_png) -> Path:
    (tmp_path / "images").mkdir()
    for i, row in enumerate(ROWS):
        write_png(tmp_path / "images" / f"{row[0]}.png", seed=i, size=16)
    pd.DataFrame(ROWS, columns=["id", "lesion", "col", "row", "diameter"]).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def plugin_for(**spec):
    return load_plugin("table", {"file_column": None, "tasks": {"lesion_at": LESION | spec}})


def rewrite(folder: Path, row: int, column: str, value: str) -> None:
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    table.loc[row, column] = value
    table.to_csv(folder / "labels.csv", index=False)


def test_a_point_declaration_builds_a_point_task():
    (task,) = plugin_for().tasks()
    assert isinstance(task, PointTask)
    assert (task.frame, task.axes, task.extent, task.extent_unit, task.extent_scale, task.unit, task.negatives) == (
        (640.0, 480.0), ("x", "y"), "diameter", "mm", 2.0, "px", True)
    assert task.target_width == 3


def test_targets_are_points_in_the_frame_with_their_extent(folder):
    plugin = plugin_for()
    records = plugin.load_records(folder)
    (task,) = plugin.tasks()
    records.validate([task])
    nan = np.nan
    expected = [[10, 20, 4.5], [640, 0, nan], [nan, nan, nan], [nan, nan, nan], [nan, nan, 2], [nan, nan, nan]]
    np.testing.assert_array_equal(records.targets["lesion_at"], expected)
    task.fit(records.targets["lesion_at"])
    _, mask = task.encode(records.targets["lesion_at"])
    assert mask.tolist() == [True, True, True, True, False, True]  # rows without a point teach "nothing here"


def test_a_point_without_extent_has_two_columns_named_by_its_axes(folder):
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    table.rename(columns={"col": "u", "row": "v"}).to_csv(folder / "labels.csv", index=False)
    plugin = load_plugin("table", {"file_column": None, "tasks": {"spot": {
        "kind": "point", "frame": [640, 480], "axes": ["u", "v"], "negatives": False, "hit_radius": 8}}})
    records = plugin.load_records(folder)
    (task,) = plugin.tasks()
    records.validate([task])
    assert records.targets["spot"].shape == (6, 2) and (task.hit_radius, task.negatives) == (8.0, False)
    np.testing.assert_array_equal(records.targets["spot"][3], [300, 200])  # no condition: every row counts


@pytest.mark.parametrize(("row", "column", "value", "message"), [
    (0, "col", "641", "labels.csv: line 2, column 'col' (task 'lesion_at'): '641' lies outside the frame (0 to "
                      "640 px)"),
    (1, "row", "-1", "labels.csv: line 3, column 'row' (task 'lesion_at'): '-1' lies outside the frame (0 to 480"),
    (0, "row", "NA", "labels.csv: line 2, column 'row' (task 'lesion_at'): no value beside 'col' '10'; a point "
                     "needs both coordinates"),
    (0, "diameter", "-2", "labels.csv: line 2, column 'diameter' (task 'lesion_at'): got '-2', expected an extent "
                          ">= 0"),
    (1, "col", "left", "labels.csv: line 3, column 'col' (task 'lesion_at'): got 'left', expected a finite number"),
])
def test_bad_point_cells_name_the_line_the_column_and_the_value(folder, row, column, value, message):
    rewrite(folder, row, column, value)
    with pytest.raises(DataError) as info:
        plugin_for().load_records(folder)
    assert message in str(info.value)


def test_missing_point_columns_are_named(folder):
    with pytest.raises(DataError, match=r"'x' \(column of task 'lesion_at'\)"):
        plugin_for(x_column=None).load_records(folder)


@pytest.mark.parametrize(("spec", "message"), [
    ({"frame": [640, 0]}, "tasks.lesion_at.point: frame must be two positive sizes"),
    ({"axes": ["x", "diameter"]}, "axes ['x', 'diameter'] and extent 'diameter' must be distinct names"),
    ({"extent": None}, "`extent_column` and `extent_scale` describe the extent: name it in `extent` too"),
    ({"colum": "x"}, "tasks.lesion_at.point.colum: Extra inputs are not permitted"),
    ({"extent_scale": 0}, "tasks.lesion_at.point.extent_scale: Input should be greater than 0"),
])
def test_point_option_mistakes_name_the_key(spec, message):
    with pytest.raises(ConfigError) as info:
        plugin_for(**spec)
    assert message in str(info.value)
