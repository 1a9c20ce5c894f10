"""The rules of `mtl init table` on small hand-made tables: task kinds, classes, missing markers, the id and file
columns, coordinates, and the columns it leaves out (with the reason the config shows)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mtl_core.config import load_config
from mtl_core.errors import DataError, MTLError
from mtl_core.plugins import load_plugin
from mtl_core.scaffold import infer_table, write_table_config
from mtl_core.scaffold.table_config import flow, scalar


def _folder(tmp_path: Path, csv: str, images: str = "images", n: int = 8, side: int = 16) -> Path:
    """A data folder with ``n`` PNG files ``img0.png`` ... in ``images`` and ``labels.csv`` (``csv`` lines)."""
    data = tmp_path / "data"
    (data / images).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((side, side), 10 * i, np.uint8)).save(data / images / f"img{i}.png")
    (data / "labels.csv").write_text(csv.strip() + "\n")
    return data


def _table(rows: list[str], header: str) -> str:
    return "\n".join([header, *rows])


def _column(guess, name: str):
    return next(c for c in guess.columns if c.name == name)


def test_kinds_and_classes_from_the_values(tmp_path):
    rows = [f"img{i}.png,{i * 1.5},{i % 2},{('true', 'false')[i % 2]},{('yes', 'no')[i % 2]},"
            f"{('cat', 'dog', 'cat', 'emu')[i % 4]}" for i in range(8)]
    data = _folder(tmp_path, _table(rows, "file,volume_ml,flag,ok,sick,animal"))
    guess = infer_table(data)
    assert guess.tasks == {
        "volume": {"kind": "regression", "unit": "ml", "column": "volume_ml"},  # the unit from the column's name
        "flag": {"kind": "binary"},  # 0/1 and true/false: the table plugin reads them as they are
        "ok": {"kind": "binary"},
        "sick": {"kind": "binary", "classes": ["no", "yes"]},  # yes/no: named classes the plugin knows
        "animal": {"kind": "classification", "classes": ["cat", "dog", "emu"]},
    }
    assert "regression" in _column(guess, "volume_ml").why and "3 distinct texts" in _column(guess, "animal").why


def test_mixed_spellings_of_yes_and_no_get_a_mapping(tmp_path):
    rows = [f"img{i}.png,{('Yes', 'no', 'YES', 'No')[i % 4]}" for i in range(8)]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,sick")))
    assert guess.tasks["sick"] == {"kind": "binary", "classes": ["no", "yes"],
                                   "mapping": {"Yes": "yes", "YES": "yes", "No": "no"}}


def test_missing_markers_known_ones_and_rare_text_in_a_numeric_column(tmp_path):
    counts = ["1", "?", "3", "4", "unknown", "6", "7", "8"]
    grades = ["low", "high", "NA", "low", "high", "", "low", "high"]
    rows = [f"img{i}.png,{c},{g}" for i, (c, g) in enumerate(zip(counts, grades, strict=True))]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,count,grade")))
    assert guess.missing_values == ["", "NA", "?", "unknown"]
    assert guess.tasks["count"]["kind"] == "regression"  # 'unknown' is a missing label, not a reason to give up
    assert guess.tasks["grade"] == {"kind": "classification", "classes": ["high", "low"]}  # 'NA' and '' are no class
    assert "'unknown': 1 cell(s) in count" in guess.markers_why


def test_a_table_without_an_id_column_uses_the_file_name(tmp_path):
    rows = [f"img{i}.png,{i}" for i in range(8)]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,count")))
    assert (guess.id_column, guess.file_column, guess.images) == ("file", "file", "images")
    assert "no id column" in _column(guess, "file").why


def test_the_id_column_by_name_or_by_the_file_stems(tmp_path):
    by_name = infer_table(_folder(tmp_path / "a", _table([f"c{i},img{i}.png,{i}" for i in range(8)],
                                                         "case_id,path,size")))
    assert (by_name.id_column, by_name.file_column) == ("case_id", "path")
    by_stem = infer_table(_folder(tmp_path / "b", _table([f"img{i},img{i}.png,{i}" for i in range(8)],
                                                         "case,image,size")))
    assert (by_stem.id_column, by_stem.file_column) == ("case", "image")
    assert "file name without the suffix" in _column(by_stem, "case").why


def test_images_in_the_data_folder_itself(tmp_path):
    guess = infer_table(_folder(tmp_path, _table([f"img{i}.png,{i}" for i in range(8)], "file,size"), images="."))
    assert guess.images == "."
    paths = _folder(tmp_path / "p", _table([f"scans/img{i}.png,{i}" for i in range(8)], "path,size"), images="scans")
    guess = infer_table(paths)  # relative paths in the cells: the data folder is the image folder
    assert (guess.images, guess.file_column) == (".", "path")
    assert "8 name a file in the data folder" in guess.why("file")
    write_table_config(paths, tmp_path / "out")  # and the table plugin reads them so


def test_unusable_columns_are_left_out_with_their_reason(tmp_path):
    rows = [f"img{i}.png,{i},note number {i},same,{(i, 'x', 'y')[i % 3]},{i % 3}" for i in range(8)]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,size,note,site,mixed,patient_group")))
    assert list(guess.tasks) == ["size"]
    assert _column(guess, "note").role == "left_out" and "8 distinct texts" in _column(guess, "note").why
    assert "one value only" in _column(guess, "site").why
    assert "mixes numbers and text" in _column(guess, "mixed").why
    assert guess.group_column == "patient_group" and _column(guess, "patient_group").role == "group"


def test_one_coordinate_pair_inside_the_frame_is_a_point_task(tmp_path):
    rows = [f"img{i}.png,{i},{15 - i},{i % 2}" for i in range(8)]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,nodule_x,nodule_y,sick")))
    assert guess.tasks["nodule"] == {"kind": "point", "frame": [16, 16], "x_column": "nodule_x",
                                     "y_column": "nodule_y", "negatives": False}
    assert _column(guess, "nodule_y").task == "nodule"
    path, _ = write_table_config(guess.data_dir, tmp_path / "example")
    text = path.read_text()
    assert text.count("nodule: {kind: point") == 1 and "pooling: map" in text
    assert load_config(path.parent).model.pooling == "map"


def test_ambiguous_coordinates_are_left_out(tmp_path):
    rows = [f"img{i}.png,{i},{i},{i},{i},{i % 2}" for i in range(8)]
    guess = infer_table(_folder(tmp_path, _table(rows, "file,a_x,a_y,b_x,b_y,sick")))
    assert list(guess.tasks) == ["sick"]
    assert "2 pairs of columns look like coordinates" in _column(guess, "a_x").why
    outside = infer_table(_folder(tmp_path / "c", _table([f"img{i}.png,{100 * i},{i}" for i in range(8)],
                                                         "file,x,y")))
    assert not outside.tasks or "point" not in {s["kind"] for s in outside.tasks.values()}
    assert "inside the images' 16x16 pixels" in _column(outside, "x").why


@pytest.mark.parametrize(("setup", "message"), [
    ("none", "holds no CSV or TSV file; name the table with --table FILE"),
    ("two", "holds 2 tables (a.csv, labels.csv); name the table with --table FILE"),
    ("no_files", "no column of the table names an image file"),
])
def test_refusals_are_one_line(tmp_path, setup, message):
    data = _folder(tmp_path, _table([f"img{i}.png,{i}" for i in range(8)], "file,size"))
    if setup == "none":
        (data / "labels.csv").unlink()
    elif setup == "two":
        (data / "a.csv").write_text("x\n1\n")
    else:
        (data / "labels.csv").write_text(_table([f"other{i}.png,{i}" for i in range(8)], "file,size"))
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        infer_table(data)
    assert "\n" not in str(caught.value)


def test_the_written_config_loads_and_reads_its_data(tmp_path):
    rows = [f"img{i}.png,{i},{('yes', 'no')[i % 2]},{('a', 'b')[i % 2]}" for i in range(8)]
    data = _folder(tmp_path, _table(rows, "file,count,sick,grade"))
    path, guess = write_table_config(data, tmp_path / "example")
    config = load_config(path.parent)
    assert Path(config.data.path) == data.resolve()  # data.path is relative to the config file
    plugin = load_plugin("table", config.plugin_options)
    records = plugin.load_records(Path(config.data.path))
    assert len(records) == 8 and [t.name for t in plugin.tasks()] == ["count", "sick", "grade"]
    assert np.array_equal(records.targets["sick"], [1, 0] * 4)
    text = path.read_text()
    assert "# left out" not in text and all(len(line) <= 120 for line in text.splitlines())
    with pytest.raises(MTLError, match="exists and is not empty"):
        write_table_config(data, tmp_path / "example")


def test_a_table_with_no_possible_task_is_refused(tmp_path):
    data = _folder(tmp_path, _table([f"img{i}.png,note {i}" for i in range(8)], "file,note"))
    with pytest.raises(MTLError, match="no column of labels.csv can be a task"):
        write_table_config(data, tmp_path / "example")
    assert not (tmp_path / "example").exists()


@pytest.mark.parametrize("value", ["", "?", "yes", "No", "1", "1.5", "null", "a: b", "#x", " x", "disc", "-", "~"])
def test_yaml_scalars_read_back_as_the_same_text(value):
    assert yaml.safe_load(f"v: {scalar(value)}")["v"] == value
    assert yaml.safe_load(f"v: {flow([value, {value: value}])}")["v"] == [value, {value: value}]
