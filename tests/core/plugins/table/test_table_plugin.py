"""The `table` plugin: tasks declared in options, targets read from any CSV/TSV/Parquet table, images found by name."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_core import BinaryTask, ClassificationTask, ConfigError, DataError, RegressionTask
from mtl_core.plugins import load_plugin
from tests.dicom_files import write_dicom

TASKS = {
    "grade": {"kind": "classification", "classes": ["low", "high"], "mapping": {1: "low", 2: "high", 9: None},
              "label_smoothing": 0.1, "weight": 2.0},
    "site": {"kind": "classification", "column": "location", "unknown": "missing",
             "patterns": [{"match": r"(l|left)\s*\.?\s*lung.*", "label": "left"},
                          {"match": r"(r|right)\s*\.?\s*lung.*", "label": "right"}]},
    "lesion": {"kind": "binary", "classes": ["absent", "present"], "pos_weight": 2.0},
    "volume": {"kind": "regression", "column": "volume_ul", "scale": 0.001, "unit": "ml", "loss": "huber",
               "value_range": 5.0, "when": {"column": "lesion", "values": ["present", 1]}},
}
ROWS = [  # id, file, patient, grade, location, lesion, volume_ul
    ("c1", "c1.png", "p1", "1", "L. lung (apex)", "present", "1500"),
    ("c2", "c2.png", "p1", "2", "right lung", "1", "2500"),
    ("c3", "c3.png", "p2", "", "Left  Lung", "absent", "0"),
    ("c4", "c4.png", "p2", "9", "mediastinum", "true", "NA"),
    ("c5", "c5.png", "p3", "high", "", "0", "700"),
    ("c6", "c6.png", "p3", "1.0", "r.lung", "?", "?"),
]
COLUMNS = ["id", "file", "patient", "grade", "location", "lesion", "volume_ul"]


@pytest.fixture
def folder(tmp_path, write_png) -> Path:
    """A data folder: labels.csv and six PNGs in images/."""
    (tmp_path / "images").mkdir()
    for i, row in enumerate(ROWS):
        write_png(tmp_path / "images" / row[1], seed=i, size=24)
    pd.DataFrame(ROWS, columns=COLUMNS).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def plugin_for(**options):
    base = {"tasks": TASKS, "group_column": "patient", "stratify": "lesion"}
    return load_plugin("table", base | options)


def rewrite(folder: Path, row: int, column: str, value: str) -> None:
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    table.loc[row, column] = value
    table.to_csv(folder / "labels.csv", index=False)


def test_tasks_are_built_from_the_declarations_in_order():
    tasks = plugin_for().tasks()
    assert [(t.name, type(t)) for t in tasks] == [("grade", ClassificationTask), ("site", ClassificationTask),
                                                 ("lesion", BinaryTask), ("volume", RegressionTask)]
    grade, site, lesion, volume = tasks
    assert (grade.classes, grade.label_smoothing, grade.weight) == (["low", "high"], 0.1, 2.0)
    assert site.classes == ["left", "right"]  # from the patterns, in order of appearance
    assert (lesion.classes, lesion.pos_weight) == (["absent", "present"], 2.0)
    assert (volume.unit, volume.loss_name, volume.value_range) == ("ml", "huber", 5.0)


def test_targets_follow_mapping_patterns_missing_markers_conditions_and_scaling(folder, caplog):
    plugin = plugin_for()
    with caplog.at_level(logging.WARNING):
        records = plugin.load_records(folder)
    records.validate(plugin.tasks())
    nan = np.nan
    expected = {
        "grade": [0, 1, nan, nan, 1, 0],  # '' missing, 9 mapped to missing, 'high' a class name, '1.0' == 1
        "site": [0, 1, 0, nan, nan, 1],  # patterns ignore case and spacing; 'mediastinum' matches none: missing
        "lesion": [1, 1, 0, 1, 0, nan],  # class names, 0/1 and true/false; '?' is a missing marker
        "volume": [1.5, 2.5, nan, nan, nan, nan],  # ul -> ml; only where lesion is present; 'NA' missing
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(records.targets[name], values, err_msg=name)
    assert records.ids == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert [p.name for p in records.paths] == [r[1] for r in ROWS]
    assert list(records.groups) == ["p1", "p1", "p2", "p2", "p3", "p3"]
    assert list(records.strata["lesion"]) == ["present", "1", "absent", "true", "0", ""]  # '?': missing
    assert plugin.stratify_key == "lesion"
    assert "'mediastinum' (1)" in caplog.text  # unmatched cells treated as missing are reported


@pytest.mark.parametrize(("row", "column", "value", "message"), [
    (2, "grade", "medium", "labels.csv: line 4, column 'grade' (task 'grade'): unknown label 'medium'; accepted: "
                           "'low', 'high', '1', '2', '9'; map other cells to a class with `mapping`"),
    (0, "volume_ul", "lots", "labels.csv: line 2, column 'volume_ul' (task 'volume'): got 'lots', expected a "
                             "finite number"),
    (1, "volume_ul", "inf", "line 3, column 'volume_ul' (task 'volume'): got 'inf'"),
    (3, "lesion", "maybe", "line 5, column 'lesion' (task 'lesion'): unknown label 'maybe'; accepted: 'absent', "
                           "'present', '0', '1', 'true', 'false'; map other cells to a class with `mapping` (e.g. "
                           "mapping: {'yes': 'present'}), or set unknown: missing"),
    (4, "id", "c1", "labels.csv: line 6, column 'id': id 'c1' repeats labels.csv: line 2"),
    (4, "id", " ", "labels.csv: line 6, column 'id': empty id"),
    (5, "file", "c9.png", "labels.csv: line 7: image 'c9.png' not found in"),
])
def test_bad_cells_name_the_line_the_column_and_the_value(folder, row, column, value, message):
    rewrite(folder, row, column, value)
    with pytest.raises(DataError) as info:
        plugin_for().load_records(folder)
    assert message in str(info.value)


def test_strata_are_columns_relabelled_or_binned(folder):
    records = plugin_for(strata=[
        "patient",
        {"column": "volume_ul", "name": "volume", "bins": [1000, 2000], "labels": ["small", "medium", "large"]},
        {"column": "grade", "mapping": {1: "grade 1", 2: "grade 2"}},
    ]).load_records(folder)
    assert list(records.strata) == ["patient", "volume", "grade", "lesion"]  # `stratify` adds its column
    assert list(records.strata["volume"]) == ["medium", "large", "small", "", "small", ""]  # NA and ? are missing
    assert list(records.strata["grade"]) == ["grade 1", "grade 2", "", "9", "high", "grade 1"]


def test_binning_a_word_names_the_cell(folder):
    rewrite(folder, 2, "volume_ul", "big")
    with pytest.raises(DataError, match="line 4, column 'volume_ul' \\(stratum 'volume_ul'\\): got 'big', expected a "
                                        "number to bin"):
        plugin_for(strata=[{"column": "volume_ul", "bins": [1.0], "labels": ["a", "b"]}]).load_records(folder)


def test_missing_columns_name_the_option_that_wants_them(folder):
    with pytest.raises(DataError) as info:
        plugin_for(group_column="subject", tasks=TASKS | {"age": {"kind": "regression"}}).load_records(folder)
    assert "lacks column(s) 'subject' (group_column), 'age' (column of task 'age')" in str(info.value)


def test_a_condition_column_must_exist_too(folder):
    tasks = TASKS | {"volume": TASKS["volume"] | {"when": {"column": "status", "values": ["x"]}}}
    with pytest.raises(DataError, match=r"'status' \(condition of task 'volume'\)"):
        plugin_for(tasks=tasks).load_records(folder)


def test_images_are_found_by_stem_whatever_their_format(folder):
    from PIL import Image

    (folder / "images" / "c1.png").unlink()
    write_dicom(folder / "images" / "c1.dcm", np.full((20, 20), 4095))
    (folder / "images" / "c2.png").rename(folder / "images" / "C2.jpg")
    Image.open(folder / "images" / "C2.jpg").save(folder / "images" / "C2.jpg", format="JPEG")
    plugin = plugin_for()
    records = plugin.load_records(folder)
    assert [p.name for p in records.paths[:3]] == ["c1.dcm", "C2.jpg", "c3.png"]
    assert plugin.read_image(records.paths[0]).min() == pytest.approx(1.0)  # a white 12-bit DICOM


def test_the_id_is_the_file_name_when_there_is_no_file_column(folder):
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False).drop(columns="file")
    table["id"] = [r[1] for r in ROWS]
    table.to_csv(folder / "labels.csv", index=False)
    records = plugin_for(file_column=None).load_records(folder)
    assert records.ids[0] == "c1.png" and records.paths[0].name == "c1.png"


def test_a_tsv_table_in_the_data_folder_itself(folder):
    for png in (folder / "images").iterdir():
        png.rename(folder / png.name)
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    table.to_csv(folder / "labels.tsv", sep="\t", index=False)
    records = plugin_for(table="labels.tsv", images=".").load_records(folder)
    np.testing.assert_array_equal(records.targets["grade"], [0, 1, np.nan, np.nan, 1, 0])


def test_a_parquet_table_reads_like_the_csv(folder):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    frame["volume_ul"] = pd.to_numeric(frame["volume_ul"], errors="coerce")  # a typed column, NaN = missing
    frame.to_parquet(folder / "labels.parquet")
    from_csv = plugin_for().load_records(folder)
    from_parquet = plugin_for(table="labels.parquet").load_records(folder)
    for name, values in from_csv.targets.items():
        np.testing.assert_array_equal(from_parquet.targets[name], values, err_msg=name)


def test_parquet_without_pyarrow_says_what_to_install(folder, monkeypatch):
    def no_engine(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    (folder / "labels.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"needs pyarrow; install it \(pip install pyarrow\) or save the table as CSV"):
        plugin_for(table="labels.parquet").load_records(folder)


@pytest.mark.parametrize(("options", "message"), [
    ({"tasks": {"g": {"kind": "classification"}}}, "tasks.g.classification: expected at least 2 "
                                                   "distinct classes"),
    ({"tasks": {"g": {"kind": "classification", "classes": ["a", "b"], "mapping": {"x": "c"}}}},
     "label 'c' is not one of the classes ['a', 'b']"),
    ({"tasks": {"Grade": {"kind": "regression"}}}, "task name 'Grade' is not snake_case"),
    ({"tasks": {"g": {"kind": "regresion"}}}, "tasks.g: unknown kind 'regresion'; use one of classification, binary, "
                                               "regression, point"),
    ({"tasks": {"g": {"unit": "mm"}}}, "tasks.g: missing 'kind'; use one of classification, binary, regression, "
                                       "point"),
    ({"tasks": {"g": {"kind": "regression", "unt": "mm"}}}, "tasks.g.regression.unt: Extra inputs are not permitted"),
    ({"tasks": {"g": {"kind": "binary", "patterns": [{"match": "(", "label": "positive"}]}}},
     "patterns.0.match: not a valid regular expression"),
    ({"tasks": {}}, "tasks: Dictionary should have at least 1 item"),
    ({"strata": [{"column": "v", "bins": [2, 1], "labels": ["a", "b", "c"]}], "tasks": TASKS},
     "bins must be strictly ascending, got [2.0, 1.0]"),
    ({"strata": [{"column": "v", "bins": [1, 2], "labels": ["a", "b"]}], "tasks": TASKS},
     "2 bin edge(s) need 3 labels, got ['a', 'b']"),
])
def test_option_mistakes_name_the_key(options, message):
    with pytest.raises(ConfigError) as info:
        load_plugin("table", options)
    assert message in str(info.value)
    assert str(info.value).startswith("plugin_options of 'table': ")
