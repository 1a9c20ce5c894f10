"""CSV files the engine writes: formula cells neutralised (OWASP), RFC 4180 quoting, and any text read back by
pandas as it was written, apart from the documented leading ``'`` of a formula cell."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_core.io import csv_cell, csv_line, csv_text, write_csv

FORMULAS = ["=1+1", "+1+2", "-2+3", "@SUM(A1:A9)", '=HYPERLINK("http://evil.example","click")', "\t=1", "\r=1",
            "=cmd|' /C calc'!A0", "-", "+", "="]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_get_a_leading_quote(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-1.5", "+3", "-2e-5", "-.5", "-inf", "-1", -1.5, -7, 0.25, "12", "ward 7", "'=x",
                                   " =1", "a=b"])
def test_numbers_and_plain_text_stay_as_they_are(value):
    assert csv_cell(value) == str(value)


def test_rfc_4180_quoting():
    assert csv_line(["a,b", 'say "hi"', "two\nlines", "cr\ronly", "plain", None, 3]) == (
        '"a,b","say ""hi""","two\nlines","cr\ronly",plain,,3')
    assert csv_line([""]) == '""'  # a lone empty field is not an empty row


def test_write_csv_neutralises_every_text_cell_and_header(tmp_path):
    frame = pd.DataFrame({"id": ["=1+1", "@me", "ok", "-1.5"], "state_pred": ["+x", "-", "benign", "a,b"],
                          "=evil": [1.5, -2.0, None, -1e-7], "n": [1, -2, 3, 4]})
    write_csv(tmp_path / "p.csv", frame)
    text = (tmp_path / "p.csv").read_text()
    assert text.splitlines()[0] == "id,state_pred,'=evil,n"
    back = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert back["id"].tolist() == ["'=1+1", "'@me", "ok", "-1.5"]
    assert back["state_pred"].tolist() == ["'+x", "'-", "benign", "a,b"]
    numbers = pd.read_csv(tmp_path / "p.csv")
    assert numbers["n"].tolist() == [1, -2, 3, 4] and numbers["'=evil"].iloc[1] == -2.0  # numbers stay numbers


def test_ordinary_frames_are_written_as_pandas_writes_them():
    frame = pd.DataFrame({"id": ["JPCLN001.png", "a b", 'q"q'], "x": [0.1, float("nan"), -3.25], "k": [1, 2, 3],
                          "cls": ["benign", "", "non-nodule"]})
    assert csv_text(frame) == frame.to_csv(index=False)


# ---- properties -------------------------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


def _expected(text: str) -> str:
    """What a cell reads back as: the text, with ``'`` in front when it would start a formula."""
    return csv_cell(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=5))
def test_any_text_round_trips_through_the_csv_writer(rows):
    frame = pd.DataFrame(rows, columns=["id", "label"])
    text = csv_text(frame)
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back.shape == frame.shape
    assert back["id"].tolist() == [_expected(t) for t, _ in rows]
    assert back["label"].tolist() == [_expected(t) for _, t in rows]
    # and the csv module, which spreadsheets' importers follow, sees the same rows
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1:] == [[_expected(a), _expected(b)] for a, b in rows]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TEXT, st.from_regex(r"[-+][0-9.e+-]{0,6}", fullmatch=True)), min_size=1, max_size=6))
def test_no_cell_can_start_a_formula(cells):
    for cell in next(csv.reader(io.StringIO(csv_line(cells), newline=""))):
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            float(cell)  # only a number may start so
