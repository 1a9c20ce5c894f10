"""The `table` plugin reads only files inside its data folder: an image cell with ``../..``, an absolute path, or
naming a symbolic link out of the folder is one DataError naming the row and the path; any string in the image
column never yields a path outside (Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mtl_core.errors import DataError
from mtl_core.io import contained
from mtl_core.plugins import load_plugin
from mtl_core.plugins.table.reading import ImageIndex

OPTIONS = {"table": "labels.csv", "images": "images", "id_column": "id", "file_column": "file",
           "tasks": {"kind": {"kind": "classification", "classes": ["a", "b"]}}}


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, Path]:
    """data/ (images a.png, b.png, a link out, a link in) beside outside/ (secret.png, and an images-like folder)."""
    root = tmp_path_factory.mktemp("containment")
    data, outside = root / "data", root / "outside"
    for name in ("a.png", "b.png"):
        _png(data / "images" / name)
    _png(data / "elsewhere.png")
    _png(outside / "secret.png")
    _png(outside / "images" / "a.png")
    (data / "images" / "link-out.png").symlink_to(outside / "secret.png")
    (data / "images" / "link-in.png").symlink_to(data / "elsewhere.png")
    return data, outside


def _run(data: Path, cells: list[str]):
    (data / "labels.csv").write_text("id,file,kind\n" + "".join(f"c{i},{c},a\n" for i, c in enumerate(cells)))
    return load_plugin("table", OPTIONS).load_records(data)


@pytest.mark.parametrize("cell", ["../../outside/secret.png", "{outside}/secret.png",
                                  "link-out.png", "../../outside/images/a.png/."])
def test_a_cell_naming_a_file_outside_is_one_error_naming_the_row(layout, cell):
    data, outside = layout
    cell = cell.format(outside=outside)
    with pytest.raises(DataError) as err:
        _run(data, ["a.png", cell])
    message = str(err.value)
    assert "labels.csv: line 3" in message and "outside the data folder" in message and "\n" not in message


@pytest.mark.parametrize("cell", ["a.png", "A", "../images/b.png", "link-in.png", "../elsewhere.png", " b.png "])
def test_cells_inside_the_data_folder_still_read(layout, cell):
    data, _ = layout
    records = _run(data, [cell])
    assert contained(records.paths[0], data)


def test_an_image_folder_the_options_put_elsewhere_is_allowed(layout):
    data, outside = layout
    (data / "labels.csv").write_text("id,file,kind\nc0,a.png,a\n")
    records = load_plugin("table", {**OPTIONS, "images": str(outside / "images")}).load_records(data)
    assert records.paths[0] == outside / "images" / "a.png"


PIECES = st.sampled_from(["..", ".", "/", "images", "a.png", "b", "link-out.png", "secret.png", "outside", "~",
                          "\\", "\x00", "%2e%2e", "…", " "])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(cell=st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=12).map("".join),
                      st.lists(PIECES, max_size=8).map("/".join)))
def test_no_cell_yields_a_path_outside_the_data_folder(layout, cell):
    data, _ = layout
    index = ImageIndex(data / "images", data)
    try:
        path = index.resolve(cell, "labels.csv: line 2")
    except DataError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    assert contained(path, data) and path.is_file()


def test_contained():
    assert contained("/a/b/c", "/a") and contained("/a", "/a")
    assert not contained("/a/../b", "/a") and not contained("/ab", "/a") and not contained("/a/\x00", "/a")
