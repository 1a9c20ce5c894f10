"""Tests for the JSRT metadata parser: the real table when present, and synthetic tables for every rule."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytest
from jsrt_res_mtnet.metadata import (
    DIAGNOSIS_GROUPS,
    LOBES,
    OUTPUT_COLUMNS,
    STATES,
    diagnosis_group,
    nodule_rows,
    parse_position,
    read_metadata,
)

from mtl_core.errors import DataError

REAL_TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/jsrt_metadata.csv"
HEADER = "study_id,subtlety,size,age,gender,x,y,state,position,diagnosis"
ROWS = [
    "JPCLN001.png,5,15,53,Male,1634,692,malignant,l.upper lobe,lung cancer",
    "JPCLN002.png,3,30,?,Female,614,1090,benign,r.middle lobe(S4),susp. inflammatory mass",
    "JPCLN003.png,1,8,70,Female,900,900,benign,right lung,granuloma",
    "JPCNN001.png,,,30,Female,,,non-nodule,,",
]


def _table(tmp_path: Path, rows: list[str] = ROWS, header: str = HEADER) -> Path:
    path = tmp_path / "jsrt_metadata.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _with(row: int, column: str, value: str) -> list[str]:
    """ROWS with one cell replaced; ``row`` indexes ROWS (file line = row + 2)."""
    names = HEADER.split(",")
    rows = [line.split(",") for line in ROWS]
    rows[row][names.index(column)] = value
    return [",".join(cells) for cells in rows]


# ---- the real JSRT table --------------------------------------------------------------------------------------

needs_real = pytest.mark.skipif(not REAL_TABLE.is_file(), reason="the real JSRT table is not available")


@pytest.fixture(scope="module")
def real():
    return read_metadata(REAL_TABLE)


@needs_real
def test_real_table_counts(real):
    assert len(real) == 247
    assert list(real.columns) == list(OUTPUT_COLUMNS)
    assert real["state"].value_counts().to_dict() == {"malignant": 100, "benign": 54, "non-nodule": 93}
    assert len(nodule_rows(real)) == 154
    assert real["study_id"].is_unique


@needs_real
def test_real_non_nodules_have_no_nodule_targets(real):
    others = real[real["state"] == "non-nodule"]
    for column in ("subtlety", "size", "x", "y", "position", "lobe", "side", "diagnosis", "diagnosis_group"):
        assert others[column].isna().all(), column
    assert others["study_id"].str.startswith("JPCNN").all()


@needs_real
def test_real_nodules_are_complete_and_mapped(real):
    nodules = nodule_rows(real)
    assert nodules[["subtlety", "size", "x", "y", "position", "diagnosis"]].notna().all().all()
    assert set(nodules["side"]) == {"right", "left"}
    lung_only = nodules["position"].isin(["left lung", "right lung"])
    assert nodules.loc[~lung_only, "lobe"].notna().all()
    assert nodules.loc[lung_only, "lobe"].isna().all() and lung_only.sum() == 12
    assert set(nodules["lobe"].dropna()) == set(LOBES)
    assert "other" not in set(nodules["diagnosis_group"])
    assert set(nodules["diagnosis_group"]) <= set(DIAGNOSIS_GROUPS)
    assert set(nodules["subtlety"]) == {1.0, 2.0, 3.0, 4.0, 5.0}


@needs_real
def test_real_question_mark_ages_become_nan(real):
    with REAL_TABLE.open(newline="") as f:
        raw_ages = [row["age"] for row in csv.DictReader(f)]
    unknown = [age.strip() == "?" for age in raw_ages]
    assert sum(unknown) >= 1
    assert real["age"].isna().tolist() == unknown


@needs_real
def test_real_table_logs_no_warnings(caplog):
    with caplog.at_level(logging.WARNING):
        read_metadata(REAL_TABLE)
    assert not caplog.records


# ---- parsing rules ------------------------------------------------------------------------------------------------


def test_synthetic_table_types_and_values(tmp_path):
    df = read_metadata(_table(tmp_path))
    first = df.iloc[0]
    assert (first["subtlety"], first["size"], first["x"], first["y"], first["age"]) == (5.0, 15.0, 1634.0, 692.0, 53.0)
    assert (first["lobe"], first["side"], first["diagnosis_group"]) == ("left upper lobe", "left", "lung cancer")
    assert math.isnan(df.loc[1, "age"])
    assert df.loc[1, "diagnosis_group"] == "inflammatory"
    assert df.loc[2, "side"] == "right" and math.isnan(df.loc[2, "lobe"])
    assert df.loc[3, ["subtlety", "size", "x", "y", "position", "diagnosis"]].isna().all()


@pytest.mark.parametrize(
    ("position", "side", "lobe"),
    [
        ("r.upper lobe(S2)", "right", "right upper lobe"),
        ("r.upper lobe(S2-S3)", "right", "right upper lobe"),
        ("r.middle lobe", "right", "right middle lobe"),
        ("r.lower lobe(S9-10)", "right", "right lower lobe"),
        ("l.upper lobe(S1+2)", "left", "left upper lobe"),
        ("l.lower lobe(S6-S8)", "left", "left lower lobe"),
        ("L. Lower Lobe", "left", "left lower lobe"),
        ("right upper lobe", "right", "right upper lobe"),
        ("left lung", "left", None),
        ("Right Lung", "right", None),
        ("l.middle lobe", "left", None),  # the left lung has no middle lobe
        ("hilum", None, None),
    ],
)
def test_parse_position(position, side, lobe):
    assert parse_position(position) == (side, lobe)


@pytest.mark.parametrize(
    ("diagnosis", "group"),
    [
        ("lung cancer", "lung cancer"),
        ("lung cancer(adenocarcinoma)", "lung cancer"),
        ("Lung Cancer (small cell carcinoma)", "lung cancer"),
        ("lung cancer(bronchioloalveolar cell carcinoma)", "lung cancer"),
        ("lung canceror metastasis", "lung cancer"),
        ("metastasis of colon cancer", "metastasis"),
        ("metastatic lung cancer", "metastasis"),
        ("susp. lung metastasis", "metastasis"),
        ("tuberculoma", "tuberculosis / granuloma"),
        ("susp.tuberculoma", "tuberculosis / granuloma"),
        ("calcified granuloma", "tuberculosis / granuloma"),
        ("pulmonary tuberculosis", "tuberculosis / granuloma"),
        ("Inflammatory mass", "inflammatory"),
        ("susp. inflammatory mass", "inflammatory"),
        ("organiging pneumonia", "inflammatory"),
        ("organizing  pneumonia", "inflammatory"),
        ("lung abscess", "inflammatory"),
        ("Cryptococcosis", "inflammatory"),
        ("susp. hamartoma", "benign tumour"),
        ("sclerosing hemangioma", "benign tumour"),
        ("pulmonary hematoma", "other benign"),
        ("unknown", "unknown"),
        ("sarcoidosis", "other"),
    ],
)
def test_diagnosis_group(diagnosis, group):
    assert diagnosis_group(diagnosis) == group
    assert group in DIAGNOSIS_GROUPS


@pytest.mark.parametrize("raw", [" Malignant ", "MALIGNANT", "malignant"])
def test_state_is_case_and_space_insensitive(tmp_path, raw):
    assert read_metadata(_table(tmp_path, _with(0, "state", raw)))["state"][0] == "malignant"


@pytest.mark.parametrize("raw", ["NON-NODULE", "non nodule", " Non-Nodule "])
def test_non_nodule_spellings(tmp_path, raw):
    assert read_metadata(_table(tmp_path, _with(3, "state", raw)))["state"][3] == "non-nodule"
    assert set(STATES) == {"benign", "malignant", "non-nodule"}


def test_unmapped_diagnosis_is_other_with_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        df = read_metadata(_table(tmp_path, _with(1, "diagnosis", "sarcoidosis")))
    assert df.loc[1, "diagnosis_group"] == "other"
    assert "'sarcoidosis' (line 3)" in caplog.text


def test_extra_columns_are_ignored_and_logged(tmp_path, caplog):
    rows = [row + ",x" for row in ROWS]
    with caplog.at_level(logging.INFO):
        df = read_metadata(_table(tmp_path, rows, HEADER + ",Comment"))
    assert list(df.columns) == list(OUTPUT_COLUMNS)
    assert len([r for r in caplog.records if "extra column(s) comment" in r.getMessage()]) == 1


def test_age_and_gender_are_optional(tmp_path):
    header = "study_id,subtlety,size,x,y,state,position,diagnosis"
    rows = ["JPCLN001.png,5,15,1634,692,malignant,l.upper lobe,lung cancer"]
    df = read_metadata(_table(tmp_path, rows, header))
    assert df[["age", "gender"]].isna().all().all()


def test_bom_and_header_case_are_accepted(tmp_path):
    path = tmp_path / "jsrt_metadata.csv"
    path.write_bytes(("\ufeff" + HEADER.upper() + "\n" + "\n".join(ROWS) + "\n").encode("utf-8"))
    assert len(read_metadata(path)) == 4


# ---- validation errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (0, "state", "maybe", r"line 2, column 'state': got 'maybe', expected one of benign, malignant, non-nodule"),
        (1, "subtlety", "6", r"line 3, column 'subtlety': got '6', expected an integer 1\.\.5"),
        (1, "subtlety", "2.5", r"line 3, column 'subtlety': got '2\.5'"),
        (1, "subtlety", "high", r"line 3, column 'subtlety': got 'high'"),
        (2, "size", "-3", r"line 4, column 'size': got '-3', expected a size in mm >= 0"),
        (2, "size", "big", r"line 4, column 'size': got 'big'"),
        (0, "x", "left", r"line 2, column 'x': got 'left', expected a pixel coordinate in \[0, 2048\)"),
        (0, "x", "2048", r"line 2, column 'x': got '2048'"),
        (0, "y", "-1", r"line 2, column 'y': got '-1'"),
        (0, "y", "nan", r"line 2, column 'y': got 'nan'"),
        (0, "x", "", r"line 2, column 'x': got '', expected a value: a malignant nodule needs x, y and size"),
        (1, "size", " ", r"line 3, column 'size': got ' ', expected a value: a benign nodule needs"),
        (0, "age", "old", r"line 2, column 'age': got 'old'"),
        (0, "study_id", "", r"line 2, column 'study_id': got ''"),
        (3, "study_id", "jpcln001.IMG", r"line 5, column 'study_id': got 'jpcln001\.IMG', .*line 2 already has"),
    ],
)
def test_bad_cell_names_file_line_column_value(tmp_path, row, column, value, message):
    path = _table(tmp_path, _with(row, column, value))
    with pytest.raises(DataError, match=message) as info:
        read_metadata(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_line_numbers_count_blank_lines(tmp_path):
    rows = [ROWS[0], "", _with(1, "state", "??")[1]]
    with pytest.raises(DataError, match=r"line 4, column 'state'"):
        read_metadata(_table(tmp_path, rows))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"jsrt_metadata\.csv does not exist; expected a CSV with columns study_id"):
        read_metadata(tmp_path / "jsrt_metadata.csv")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataError, match=r"m\.csv is empty"):
        read_metadata(tmp_path / "m.csv")


def test_header_only(tmp_path):
    with pytest.raises(DataError, match="has a header but no data rows"):
        read_metadata(_table(tmp_path, []))


def test_missing_columns_are_named(tmp_path):
    header = "study_id,subtlety,age,gender,x,y,position,diagnosis"
    with pytest.raises(DataError, match=r"line 1 lacks column\(s\) size, state; expected a header with study_id"):
        read_metadata(_table(tmp_path, ["JPCLN001.png,5,53,Male,1,2,l.upper lobe,lung cancer"], header))


def test_wrong_field_count(tmp_path):
    rows = [ROWS[0], ROWS[1] + ",extra"]
    with pytest.raises(DataError, match="line 3 has 11 fields, the header has 10"):
        read_metadata(_table(tmp_path, rows))
