"""examples/jsrt_table declares, with the generic table plugin, exactly the records of the dedicated JSRT plugin:
same ids, images, task definitions and targets (free-text spellings included), and the same strata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_core.config import load_config
from mtl_core.plugins import load_plugin
from mtl_core.workflow import build_tasks

pytest.importorskip("jsrt_res_mtnet")
REPO = Path(__file__).resolve().parents[2]
HEADER = ["study_id", "subtlety", "size", "age", "gender", "x", "y", "state", "position", "diagnosis"]
# Spellings the JSRT rules normalise: case, spacing, 'susp.' prefixes, parentheses, sides without a lobe.
NODULES = [
    ("5", "15", "malignant", "l.upper lobe", "lung cancer"),
    ("4", "12", "malignant", "R . Upper Lobe (S2)", "Lung Cancer (adenocarcinoma)"),
    ("3", "22", "malignant", "r.middle lobe(S4)", "lung canceror metastasis"),
    ("2", "9", "malignant", "left lung", "susp. lung metastasis"),
    ("1", "31", "malignant", "right lung", "metastasis of colon cancer"),
    ("3", "18", "benign", "l.lower lobe(S10)", "susp.tuberculoma"),
    ("4", "25", "benign", "right lower lobe", "calcified   granuloma"),
    ("5", "11", "benign", "l.middle lobe", "Organiging pneumonia"),
    ("2", "14", "benign", "r.lower lobe(S9-10)", "suspected hamartoma"),
    ("3", "16", "benign", "l.upper lobe(S1+2)", "pulmonary hematoma"),
    ("4", "20", "benign", "r.upper lobe", "unknown"),
    ("1", "13", "malignant", "r.upper lobe", "mesothelioma"),  # no rule: 'other', masked
    ("2", "10", "benign", "L.Upper lobe", "Cryptococcosis"),
]


@pytest.fixture
def jsrt_folder(tmp_path, write_png) -> Path:
    rows = [[f"JPCLN{i:03d}.png", sub, size, "50", "Male", str(100 + 37 * i), str(1900 - 41 * i), state, pos, diag]
            for i, (sub, size, state, pos, diag) in enumerate(NODULES, start=1)]
    rows += [[f"JPCNN{i:03d}.png", "", "", "?", "Female", "", "", "non-nodule", "", ""] for i in range(1, 6)]
    (tmp_path / "images").mkdir()
    for i, row in enumerate(rows):
        write_png(tmp_path / "images" / row[0], seed=i, size=16)
    pd.DataFrame(rows, columns=HEADER).to_csv(tmp_path / "jsrt_metadata.csv", index=False)
    return tmp_path


def _records(example: str, data: Path):
    config = load_config(REPO / "examples" / example)
    plugin = load_plugin(config.plugin, config.plugin_options)
    records = plugin.load_records(data)
    tasks = build_tasks(plugin, config)
    records.validate(tasks)
    return plugin, tasks, records


def test_the_table_config_reproduces_the_dedicated_plugin_records(jsrt_folder):
    dedicated, tasks_a, a = _records("jsrt_res_mtnet", jsrt_folder)
    table, tasks_b, b = _records("jsrt_table", jsrt_folder)
    assert b.ids == a.ids
    assert [p.resolve() for p in b.paths] == [p.resolve() for p in a.paths]
    assert [t.describe() for t in tasks_b] == [t.describe() for t in tasks_a]  # kinds, classes, smoothing, ranges
    for name, values in a.targets.items():
        np.testing.assert_array_equal(b.targets[name], values, err_msg=name)
    assert table.stratify_key == dedicated.stratify_key == "state"
    assert table.reader_id() == dedicated.reader_id()  # one feature-cache entry: the second run reuses the first's
    assert sorted(b.strata) == sorted(a.strata) == ["size", "state", "subtlety"]  # the report's breakdowns
    for name, labels in a.strata.items():
        assert list(b.strata[name]) == list(labels), name


def test_the_odd_spellings_are_really_labelled(jsrt_folder):
    _, tasks, records = _records("jsrt_table", jsrt_folder)
    position = dict(zip(records.ids, records.targets["position"], strict=True))
    diagnosis = dict(zip(records.ids, records.targets["diagnosis"], strict=True))
    lobes, groups = tasks[2].classes, tasks[3].classes
    assert lobes[int(position["JPCLN002.png"])] == "right upper lobe"  # 'R . Upper Lobe (S2)'
    assert np.isnan(position["JPCLN004.png"]) and np.isnan(position["JPCLN008.png"])  # 'left lung', no left middle
    assert groups[int(diagnosis["JPCLN003.png"])] == "lung cancer"  # 'lung canceror metastasis'
    assert groups[int(diagnosis["JPCLN009.png"])] == "benign tumour"  # 'suspected hamartoma'
    assert np.isnan(diagnosis["JPCLN012.png"])  # no rule knows 'mesothelioma'
    assert np.isnan(records.targets["location"][-5:]).all()  # non-nodule images carry no nodule labels
