# tests/test_stripes.py
"""The stripes plugin meets the engine's contract and reads its table as documented."""

import numpy as np
import pytest

from mtl_core import DataError, check_plugin, load_plugin


def test_passes_the_conformance_check():
    report = check_plugin("stripes", {"n": 24})
    assert report.ok, report.format()


def test_empty_orientation_is_a_missing_label(tmp_path):
    plugin = load_plugin("stripes", {"n": 24})
    records = plugin.load_records(plugin.synthetic_data(tmp_path))
    records.validate(plugin.tasks())
    assert len(records) == 24
    assert np.isnan(records.targets["orientation"]).any()  # unlabelled cases are masked...
    assert not np.isnan(records.targets["period"]).any()  # ...and still train the other task


def test_a_bad_label_names_its_line(tmp_path):
    plugin = load_plugin("stripes", {"n": 24})
    folder = plugin.synthetic_data(tmp_path)
    lines = (folder / "labels.csv").read_text().splitlines()
    cells = lines[3].split(",")  # line 4 of the file: file, orientation, period
    lines[3] = ",".join([cells[0], "sideways", cells[2]])
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 4: orientation 'sideways'"):
        plugin.load_records(folder)
