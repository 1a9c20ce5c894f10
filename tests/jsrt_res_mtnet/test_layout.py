"""Tests for finding JSRT data folder layouts and resolving study ids to image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from jsrt_res_mtnet.layout import Layout, find_layout, list_images, resolve_image

from mtl_core.errors import DataError


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    _touch(tmp_path / "jsrt_metadata.csv", b"study_id\n")
    return tmp_path


@pytest.mark.parametrize("folder", ["images", "images/images", "."])
def test_kaggle_layouts(root, folder):
    image = _touch(root / folder / "JPCLN001.png")
    layout = find_layout(root)
    assert layout == Layout(root, root / "jsrt_metadata.csv", root / folder)  # pathlib drops "."
    assert not layout.recursive
    assert resolve_image(layout, "JPCLN001.png").samefile(image)


def test_original_layout_finds_img_below_and_ignores_other_images(root):
    nodule = _touch(root / "Nodule154images" / "JPCLN001.IMG")
    normal = _touch(root / "NonNodule93images" / "JPCNN001.IMG")
    _touch(root / "masks" / "left lung" / "JPCLN001.png")  # same stem, must not be taken for the image
    layout = find_layout(root)
    assert layout.recursive and layout.image_dir == root
    assert resolve_image(layout, "JPCLN001.png") == nodule
    assert list_images(layout) == [nodule, normal]


def test_img_beside_the_table(root):
    image = _touch(root / "JPCNN093.IMG")
    layout = find_layout(root)
    assert not layout.recursive and resolve_image(layout, "JPCNN093.png") == image


def test_stem_match_ignores_case_and_extension(root):
    image = _touch(root / "images" / "jpcln007.PNG")
    assert resolve_image(find_layout(root), " JPCLN007.jpg ") == image


def test_exact_name_wins_then_suffix_order(root):
    png = _touch(root / "images" / "JPCLN001.png")
    img = _touch(root / "images" / "JPCLN001.IMG")
    layout = find_layout(root)
    assert resolve_image(layout, "JPCLN001.IMG") == img
    assert resolve_image(layout, "JPCLN001.dcm") == png


def test_case_insensitive_names(tmp_path):
    _touch(tmp_path / "JSRT_Metadata.csv")
    image = _touch(tmp_path / "Images" / "JPCLN001.png")
    layout = find_layout(tmp_path)
    assert layout.metadata_csv.name == "JSRT_Metadata.csv" and layout.image_dir.name == "Images"
    assert resolve_image(layout, "JPCLN001.png") == image


def test_list_images_skips_hidden_and_other_files(root):
    images = [_touch(root / "images" / name) for name in ("JPCLN001.png", "JPCNN001.png", "EXTRA.png")]
    _touch(root / "images" / "._JPCLN001.png")
    _touch(root / "images" / "notes.txt")
    assert list_images(find_layout(root)) == sorted(images)


def test_layout_is_frozen(root):
    _touch(root / "images" / "JPCLN001.png")
    with pytest.raises(dataclasses.FrozenInstanceError):
        find_layout(root).root = Path("/")


# ---- errors ---------------------------------------------------------------------------------------------------


def test_root_missing(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist; pass the folder that holds jsrt_"):
        find_layout(tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    with pytest.raises(DataError, match="is a file, not a folder"):
        find_layout(_touch(tmp_path / "jsrt_metadata.csv"))


def test_empty_folder(tmp_path):
    _touch(tmp_path / ".DS_Store")
    with pytest.raises(DataError, match=r"is empty; put a JSRT copy there: Kaggle .* original"):
        find_layout(tmp_path)


def test_no_table_says_what_is_expected(tmp_path):
    _touch(tmp_path / "images" / "JPCLN001.png")
    with pytest.raises(
        DataError, match=r"has no jsrt_metadata\.csv; supported: Kaggle \(jsrt_metadata\.csv .*original"
    ):
        find_layout(tmp_path)


def test_no_table_points_at_nested_copy(tmp_path):
    _touch(tmp_path / "archive" / "jsrt_metadata.csv")
    with pytest.raises(DataError, match=r"found one in .*archive: pass that folder instead"):
        find_layout(tmp_path)


@pytest.mark.parametrize("setup", ["nothing", "empty images", "not images"])
def test_no_images(root, setup):
    if setup != "nothing":
        (root / "images").mkdir()
    if setup == "not images":
        _touch(root / "images" / "readme.txt")
    with pytest.raises(DataError, match=r"has jsrt_metadata\.csv but no images: looked in images/, images/images/"):
        find_layout(root)


def test_missing_image_names_study_and_where(root):
    _touch(root / "images" / "JPCLN001.png")
    layout = find_layout(root)
    with pytest.raises(
        DataError, match=r"study_id 'JPCLN002\.png' not found: looked for JPCLN002\(\.png\|.*\.img"
    ) as info:
        resolve_image(layout, "JPCLN002.png")
    assert str(root / "images") in str(info.value)


def test_missing_image_in_original_layout_says_below(root):
    _touch(root / "sub" / "JPCLN001.IMG")
    with pytest.raises(DataError, match=r"JPCLN009\(\.img\), any case, in .* and the folders below it"):
        resolve_image(find_layout(root), "JPCLN009.png")
