"""Tests for the raw JSRT .IMG reader and writer."""

from __future__ import annotations

import numpy as np
import pytest
from jsrt_res_mtnet.raw_img import JSRT_BYTES, JSRT_SHAPE, read_jsrt_img, register_img_reader, write_jsrt_img

from mtl_core.errors import DataError
from mtl_core.io import images as imaging


@pytest.fixture
def gradient() -> np.ndarray:
    rows = np.linspace(0.0, 1.0, JSRT_SHAPE[0])[:, None]  # dark at the top, bright at the bottom
    return np.broadcast_to(rows, JSRT_SHAPE).copy()


def test_reads_every_pixel_of_a_file_laid_out_as_the_jsrt_archive(tmp_path):
    # written without the plugin: 2048 x 2048 big-endian 12-bit values, row after row, no header
    values = (np.arange(JSRT_SHAPE[0] * JSRT_SHAPE[1]) * 7 % 4096).astype(">u2").reshape(2048, 2048)
    path = tmp_path / "JPCLN010.IMG"
    path.write_bytes(values.tobytes())
    assert path.stat().st_size == JSRT_BYTES == 8_388_608
    image = read_jsrt_img(path)
    np.testing.assert_allclose(image, 1 - values.astype(np.float64) / 4095, rtol=0, atol=1e-6)
    for damaged in (values.tobytes()[:-2], values.tobytes() + b"\0\0"):  # one pixel short, one pixel over
        path.write_bytes(damaged)
        with pytest.raises(DataError, match="a raw JSRT .IMG"):
            read_jsrt_img(path)


def test_round_trip_keeps_orientation_and_grey_levels(tmp_path, gradient):
    path = tmp_path / "JPCLN001.IMG"
    write_jsrt_img(path, gradient)
    assert path.stat().st_size == JSRT_BYTES
    image = read_jsrt_img(path)
    assert image.dtype == np.float32 and image.shape == JSRT_SHAPE
    assert np.abs(image - gradient).max() <= 0.5 / 4095 + 1e-6
    assert image[0].mean() < image[-1].mean()


def test_file_convention_is_big_endian_and_high_means_dark(tmp_path):
    stored = np.zeros(JSRT_SHAPE, dtype=">u2")
    stored[0, 0] = 4095  # the darkest value in the .IMG convention
    stored[0, 1] = 1
    path = tmp_path / "raw.IMG"
    stored.tofile(path)
    assert path.read_bytes()[:4] == b"\x0f\xff\x00\x01"
    image = read_jsrt_img(path)
    assert image[0, 0] == 0.0 and image[1, 1] == 1.0
    assert image[0, 1] == pytest.approx(1 - 1 / 4095)


@pytest.mark.parametrize(("grey", "stored"), [(0.0, 4095), (1.0, 0), (0.25, 3071), (0.5, 2048)])
def test_writer_stores_every_pixel_in_the_img_convention(tmp_path, grey, stored):
    path = tmp_path / "flat.IMG"
    write_jsrt_img(path, np.full(JSRT_SHAPE, grey))
    values = np.fromfile(path, dtype=">u2")  # rint((1 - grey) * 4095): 3071.25 -> 3071, 2047.5 -> 2048 (to even)
    assert values.size == JSRT_SHAPE[0] * JSRT_SHAPE[1] and (values == stored).all()
    assert not list(tmp_path.glob(".*.tmp"))


def test_wrong_size_names_file_found_and_expected(tmp_path):
    path = tmp_path / "JPCLN002.IMG"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(DataError, match=r"JPCLN002\.IMG has 1,000 bytes.*8,388,608 bytes"):
        read_jsrt_img(path)


def test_little_endian_file_is_rejected(tmp_path):
    stored = np.full(JSRT_SHAPE, 4095, dtype="<u2")
    path = tmp_path / "le.IMG"
    stored.tofile(path)
    with pytest.raises(DataError, match=r"le\.IMG holds values up to 65295, above the 12-bit maximum 4095"):
        read_jsrt_img(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="JPCNN001.IMG does not exist"):
        read_jsrt_img(tmp_path / "JPCNN001.IMG")


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.zeros((64, 64)), r"array shape \(64, 64\)"), (np.full(JSRT_SHAPE, 1.5), r"within \[0, 1\]")],
)
def test_writer_rejects_bad_arrays(tmp_path, array, message):
    with pytest.raises(DataError, match=message):
        write_jsrt_img(tmp_path / "x.IMG", array)
    assert not (tmp_path / "x.IMG").exists()


def test_register_img_reader_routes_read_image(tmp_path, gradient, monkeypatch):
    monkeypatch.setattr(imaging, "_READERS", dict(imaging._READERS))
    register_img_reader()
    register_img_reader()  # idempotent
    assert ".img" in imaging.supported_suffixes()
    path = tmp_path / "JPCNN001.IMG"
    write_jsrt_img(path, gradient)
    np.testing.assert_allclose(imaging.read_image(path), read_jsrt_img(path))
