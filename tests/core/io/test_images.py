"""Tests for mtl_core.io.images.read_image: formats, normalisation, DICOM display tags, and bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_core.errors import DataError, MTLError, PluginError
from mtl_core.io import images as imaging
from mtl_core.io import read_image, register_reader, supported_suffixes

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-4711"


@pytest.fixture
def ramp8() -> np.ndarray:
    return np.arange(32 * 32, dtype=np.uint32).reshape(32, 32).astype(np.uint8)  # 0..255 repeated


def _save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def _check_unit(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert image.dtype == np.float32
    assert image.shape == shape
    assert image.min() >= 0.0 and image.max() <= 1.0


# ---- Pillow formats -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_8bit_lossless_is_divided_by_255(tmp_path, ramp8, suffix):
    image = read_image(_save(ramp8, tmp_path / f"a{suffix}"))
    _check_unit(image, (32, 32))
    np.testing.assert_allclose(image, ramp8 / 255.0, atol=1e-6)


def test_jpeg_grayscale_is_close(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    image = read_image(_save(smooth, tmp_path / "a.JPG", quality=95))  # suffix case does not matter
    _check_unit(image, (64, 64))
    assert np.abs(image - smooth / 255.0).max() < 0.05


def test_16bit_png_full_range_is_divided_by_65535(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    image = read_image(_save(values, tmp_path / "a.png"))
    _check_unit(image, (32, 32))
    np.testing.assert_allclose(image, values / 65535.0, atol=1e-6)


def test_16bit_png_with_12bit_data_is_divided_by_4095(tmp_path):
    values = np.linspace(0, 4095, 32 * 32).astype(np.uint16).reshape(32, 32)
    image = read_image(_save(values, tmp_path / "a.png"))
    assert image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(image, values / 4095.0, atol=1e-6)


def test_16bit_tiff(tmp_path):
    values = np.full((32, 32), 30000, dtype=np.uint16)
    image = read_image(_save(values, tmp_path / "a.tiff"))
    np.testing.assert_allclose(image, 30000 / 65535.0, atol=1e-6)


def test_rgb_becomes_luminance(tmp_path):
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[:, :16] = (255, 0, 0)
    rgb[:, 16:] = (255, 255, 255)
    image = read_image(_save(rgb, tmp_path / "a.png"))
    _check_unit(image, (32, 32))
    np.testing.assert_allclose(image[:, :16], 0.299, atol=1e-3)
    np.testing.assert_allclose(image[:, 16:], 1.0, atol=1e-6)


def test_rgba_and_la_ignore_alpha(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 0  # fully transparent: still the grey level underneath
    np.testing.assert_allclose(read_image(_save(rgba, tmp_path / "a.png")), 200 / 255.0, atol=1e-3)
    la = Image.fromarray(np.full((32, 32), 100, dtype=np.uint8)).convert("LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), 100 / 255.0, atol=1e-6)


def test_palette_png_goes_through_its_palette(tmp_path):
    img = Image.new("P", (32, 32))
    img.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[:, 16:] = 1  # index 1 = white in the palette
    img.putdata(pixels.ravel().tolist())
    img.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    _check_unit(image, (32, 32))
    assert image[:, :16].max() == 0.0 and image[:, 16:].min() == pytest.approx(1.0)


# ---- bad files ------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.png does not exist"):
        read_image(tmp_path / "nope.png")


def test_directory_is_not_an_image(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_image(tmp_path / "dir.png")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png is an empty \(zero-byte\) file"):
        read_image(tmp_path / "empty.png")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("study_id,subtlety\nJPCLN001.png,5\n")
    with pytest.raises(DataError, match="notes.png is not a readable image"):
        read_image(tmp_path / "notes.png")


def test_truncated_png_fails_on_full_decode(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    data = _save(noise, tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png is truncated or corrupt") as info:
        read_image(tmp_path / "cut.png")
    assert "\n" not in str(info.value)


def test_unsupported_suffix_lists_supported(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"abc")
    with pytest.raises(DataError, match=r"unsupported suffix '\.xyz'.*\.dcm.*\.png"):
        read_image(tmp_path / "a.xyz")


# ---- registry -------------------------------------------------------------------------------------------------


@pytest.fixture
def own_registry(monkeypatch):
    monkeypatch.setattr(imaging, "_READERS", dict(imaging._READERS))


def test_builtin_suffixes():
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"} <= set(supported_suffixes())


def test_register_reader_dispatches_case_insensitively(tmp_path, own_registry):
    register_reader("RAW", lambda path: np.full((4, 5), 0.25))
    assert ".raw" in supported_suffixes()
    (tmp_path / "x.Raw").write_bytes(b"1")
    image = read_image(tmp_path / "x.Raw")
    assert image.dtype == np.float32 and image.shape == (4, 5)


def test_register_duplicate_raises_unless_overwrite(own_registry):
    with pytest.raises(MTLError, match="already registered"):
        register_reader(".png", lambda path: np.zeros((2, 2)))
    register_reader(".png", lambda path: np.zeros((2, 2)), overwrite=True)


def test_core_reader_id_only_when_the_core_reads_every_suffix(own_registry):
    """Plugins that read the same files with the core reader share cached features; a plugin's own reader, or one
    that replaced the core's for a suffix, keeps its own identity (None: the plugin's default)."""
    core = imaging.core_reader_id([".PNG", "jpg", ".dcm"])
    assert core is not None and core == imaging.core_reader_id({".png"})
    register_reader(".raw", lambda path: np.zeros((2, 2)))
    assert imaging.core_reader_id([".png", ".raw"]) is None and imaging.core_reader_id([]) is None
    register_reader(".png", lambda path: np.zeros((2, 2)), overwrite=True)
    assert imaging.core_reader_id([".png"]) is None


def test_bad_reader_output_is_a_plugin_error(tmp_path, own_registry):
    register_reader(".bad", lambda path: np.full((2, 2, 3), 7.0))
    (tmp_path / "x.bad").write_bytes(b"1")
    with pytest.raises(PluginError, match=r"reader for '\.bad' returned shape \(2, 2, 3\)"):
        read_image(tmp_path / "x.bad")


# ---- DICOM ----------------------------------------------------------------------------------------------------


def _dicom(path: Path, stored: np.ndarray | None, photometric: str = "MONOCHROME2", **tags) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    if stored is not None:
        ds.set_pixel_data(stored, photometric_interpretation=photometric, bits_stored=12)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def stored12() -> np.ndarray:
    return np.linspace(0, 4095, 32 * 32).astype(np.uint16).reshape(32, 32)


def test_dicom_without_window_uses_bits_stored_range(tmp_path, stored12):
    image = read_image(_dicom(tmp_path / "a.dcm", stored12, RescaleSlope=2, RescaleIntercept=-1024))
    _check_unit(image, (32, 32))
    np.testing.assert_allclose(image, stored12 / 4095.0, atol=1e-6)  # a linear rescale keeps the relative range


def test_dicom_rescale_then_window(tmp_path):
    stored = np.array([[0, 512, 1012, 2000]], dtype=np.uint16)  # -> HU -1024, 0, 1000, 2976 with slope 2
    path = _dicom(tmp_path / "a.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=2001)
    image = read_image(path)
    np.testing.assert_allclose(image, [[0.0, 0.50025, 1.0, 1.0]], atol=1e-4)


def test_dicom_multivalued_window_uses_first_pair(tmp_path):
    stored = np.array([[0, 100, 200]], dtype=np.uint16)
    image = read_image(_dicom(tmp_path / "a.dcm", stored, WindowCenter=[100, 2000], WindowWidth=[201, 4000]))
    np.testing.assert_allclose(image, [[0.0025, 0.5025, 1.0]], atol=1e-4)


def test_dicom_monochrome1_is_inverted(tmp_path, stored12):
    mono2 = read_image(_dicom(tmp_path / "m2.dcm", stored12, "MONOCHROME2", WindowCenter=2048, WindowWidth=4096))
    mono1 = read_image(_dicom(tmp_path / "m1.dcm", stored12, "MONOCHROME1", WindowCenter=2048, WindowWidth=4096))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == pytest.approx(1.0)  # stored 0 is white in MONOCHROME1


def test_dicom_found_by_magic_without_suffix(tmp_path, stored12):
    path = _dicom(tmp_path / "a.dcm", stored12)
    renamed = path.rename(tmp_path / "IM0001")
    np.testing.assert_allclose(read_image(renamed), stored12 / 4095.0, atol=1e-6)


def test_dicom_without_pixel_data_does_not_leak_identifiers(tmp_path, caplog):
    path = _dicom(tmp_path / "report.dcm", None)
    with caplog.at_level(logging.DEBUG), pytest.raises(DataError, match="report.dcm has no pixel data") as info:
        read_image(path)
    for secret in ("Doe", PATIENT_ID):
        assert secret not in str(info.value) and secret not in caplog.text


def test_dicom_read_logs_no_identifiers(tmp_path, stored12, caplog):
    path = _dicom(tmp_path / "a.dcm", stored12, WindowCenter=2048, WindowWidth=4096)
    with caplog.at_level(logging.DEBUG):
        read_image(path)
    assert "Doe" not in caplog.text and PATIENT_ID not in caplog.text


def test_truncated_dicom_pixel_data(tmp_path, stored12):
    data = _dicom(tmp_path / "full.dcm", stored12).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    with pytest.raises(DataError, match="cut.dcm pixel data cannot be decoded"):
        read_image(tmp_path / "cut.dcm")


def test_text_file_named_dcm(tmp_path):
    (tmp_path / "a.dcm").write_text("hello, not a dicom\n")
    with pytest.raises(DataError, match=r"a.dcm has no pixel data \(PixelData\) and no 'DICM' marker"):
        read_image(tmp_path / "a.dcm")
