"""Decompression bombs and malformed DICOM tags: refused (or ignored with a warning) in one line, before decoding.

Each bomb is a real file of a few KB to a few hundred KB that declares or inflates to far more than the limits;
the tests pass only if it is refused from its header, never decoded.
"""

from __future__ import annotations

import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_core.errors import ConfigError, DataError
from mtl_core.io import image_limits, read_image, reset_image_limits, set_image_limits
from mtl_core.io.limits import DEFAULT_MAX_DICOM_BYTES, DEFAULT_MAX_PIXELS, DICOM_BYTES_ENV, PIXELS_ENV

SECRET = "SECRET-4711"


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch):
    monkeypatch.delenv(PIXELS_ENV, raising=False)
    monkeypatch.delenv(DICOM_BYTES_ENV, raising=False)
    reset_image_limits()
    yield
    reset_image_limits()


def _one_line(error: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 500, text
    for part in parts:
        assert part in text, (part, text)
    return text


# ---- the limits themselves ------------------------------------------------------------------------------------


def test_defaults_fit_large_medical_images():
    limits = image_limits()
    assert limits.max_pixels == DEFAULT_MAX_PIXELS == 8192 * 8192
    assert limits.max_pixels > 4096 * 5625  # a large mammogram
    assert limits.max_dicom_bytes == DEFAULT_MAX_DICOM_BYTES >= 4 * 2048 * 2048


def test_environment_then_setter_then_reset(monkeypatch):
    monkeypatch.setenv(PIXELS_ENV, "100_000_000")
    monkeypatch.setenv(DICOM_BYTES_ENV, "1e9")
    assert image_limits().max_pixels == 100_000_000 and image_limits().max_dicom_bytes == 10**9
    set_image_limits(max_pixels=5)
    assert image_limits().max_pixels == 5 and image_limits().max_dicom_bytes == 10**9
    reset_image_limits()
    assert image_limits().max_pixels == 100_000_000


@pytest.mark.parametrize("text", ["lots", "-5", "0", "1.5", "nan", "x" * 5000])
def test_bad_environment_value_is_one_config_line(monkeypatch, text):
    monkeypatch.setenv(PIXELS_ENV, text)
    with pytest.raises(ConfigError, match=PIXELS_ENV) as info:
        image_limits()
    _one_line(info, "positive whole number")


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_setter_refuses_non_positive_integers(value):
    with pytest.raises(ConfigError, match="max_pixels"):
        set_image_limits(max_pixels=value)


# ---- Pillow images ----------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few KB that decode to ``width * height`` grey pixels."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


def test_png_of_100_megapixels_is_refused_before_decoding(tmp_path):
    path = png_bomb(tmp_path / "bomb.png", 10_000, 10_000)
    assert path.stat().st_size < 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape either
        with pytest.raises(DataError) as info:
            read_image(path)
    _one_line(info, "bomb.png", "10000 x 10000", "100,000,000 pixels", "67,108,864", PIXELS_ENV, "set_image_limits")


def test_png_beyond_pillows_own_limit_names_ours(tmp_path):
    path = png_bomb(tmp_path / "huge.png", 20_000, 20_000)
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "huge.png", "over the limit of 67,108,864 pixels", PIXELS_ENV)


def test_lower_limit_refuses_and_raised_limit_reads(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.full((40, 50), 200, np.uint8)).save(path)
    monkeypatch.setenv(PIXELS_ENV, "1000")
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "small.png is 50 x 40 = 2,000 pixels", "limit of 1,000 pixels", f"{PIXELS_ENV}=2000")
    set_image_limits(max_pixels=2000)
    assert read_image(path).shape == (40, 50)


# ---- DICOM ------------------------------------------------------------------------------------------------------


def _raw(ds, keyword: str, value: bytes, vr: str = "DS") -> None:
    """Store ``value`` as the tag's bytes, unchecked: how a damaged or hostile file carries garbage."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    value += b" " * (len(value) % 2)
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def dicom(path: Path, pixels: np.ndarray, syntax: str = "1.2.840.10008.1.2.1", raw: dict | None = None,
          **tags) -> Path:
    """A 12-bit MONOCHROME2 DICOM with a patient id, ``tags`` set, and ``raw`` tags stored as unchecked bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = SECRET
    ds.set_pixel_data(pixels.astype(np.uint16), photometric_interpretation="MONOCHROME2", bits_stored=12)
    for key, value in tags.items():
        setattr(ds, key, value)
    for key, (value, vr) in (raw or {}).items():
        _raw(ds, key, value, vr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's complaints about the garbage we write on purpose
        ds.save_as(path, enforce_file_format=True)
    return path


def deflated_bomb(path: Path, side: int) -> Path:
    """A deflated DICOM declaring ``side`` x ``side`` 16-bit pixels, all zero: a few hundred KB on disk that inflate
    to ``2 * side**2`` bytes. Written by hand, as pydicom would build the whole data set in memory first."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    small = dicom(path.with_name("seed.dcm"), np.zeros((2, 2)))
    import pydicom

    ds = pydicom.dcmread(small)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.Rows = ds.Columns = side
    del ds.PixelData
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    size = 2 * side * side
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [packer.compress(body.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size))]
    zeros = b"\0" * (1 << 20)
    parts += [packer.compress(zeros) for _ in range(size >> 20)] + [packer.compress(b"\0" * (size % (1 << 20)))]
    path.write_bytes(b"\0" * 128 + b"DICM" + head.getvalue() + b"".join(parts) + packer.flush())
    return path


@pytest.fixture
def stored12() -> np.ndarray:
    return np.linspace(0, 4095, 32 * 32).astype(np.uint16).reshape(32, 32)


def test_deflated_dicom_that_inflates_past_the_limit_is_refused_unread(tmp_path):
    set_image_limits(max_dicom_bytes=4 * 2**20)  # the same check as at 256 MiB, with a bomb that builds fast
    path = deflated_bomb(tmp_path / "bomb.dcm", 2048)  # 8 MiB inflated
    assert path.stat().st_size < 50_000
    with pytest.raises(DataError) as info:
        read_image(path)
    text = _one_line(info, "bomb.dcm", "deflated", "4,194,304 bytes", DICOM_BYTES_ENV)
    assert SECRET not in text


def test_deflated_dicom_within_the_limit_reads(tmp_path, stored12):
    path = dicom(tmp_path / "small.dcm", stored12, syntax="1.2.840.10008.1.2.1.99")
    np.testing.assert_allclose(read_image(path), stored12 / 4095, atol=1e-6)


def test_dicom_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = dicom(tmp_path / "big.dcm", np.zeros((4, 4)))
    import pydicom

    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 60000  # the pixel data stays 32 bytes: decoding would fail, so must not be tried
    ds.save_as(path)
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "big.dcm declares 60000 x 60000 = 3,600,000,000 pixels", "67,108,864", PIXELS_ENV)


def test_dicom_of_many_frames_is_refused_before_decoding(tmp_path):
    path = dicom(tmp_path / "cine.dcm", np.zeros((4, 4)), raw={"NumberOfFrames": (b"5000000", "IS")})
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "cine.dcm declares 4 x 4 x 5000000 frames", PIXELS_ENV)
    path = dicom(tmp_path / "two.dcm", np.zeros((4, 4)), raw={"NumberOfFrames": (b"2", "IS")})
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "two.dcm has 2 frames", "expected one 2-D grayscale frame")


def test_dicom_file_over_the_byte_limit_is_refused_unread(tmp_path, stored12):
    path = dicom(tmp_path / "a.dcm", stored12)
    set_image_limits(max_dicom_bytes=1000)
    with pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "a.dcm is", "bytes, over the limit of 1,000 bytes", "max_dicom_bytes")


@pytest.mark.parametrize("keyword, value, vr", [("Rows", b"\0\0", "US"), ("BitsAllocated", b"\0\0", "US"),
                                                ("NumberOfFrames", b"many", "IS"), ("NumberOfFrames", b"-3", "IS")])
def test_malformed_size_tags_are_one_line(tmp_path, caplog, keyword, value, vr):
    path = dicom(tmp_path / "a.dcm", np.zeros((4, 4)), raw={keyword: (value, vr)})
    caplog.clear()  # pydicom's own complaints while the test wrote the file
    with caplog.at_level(logging.DEBUG), pytest.raises(DataError) as info:
        read_image(path)
    _one_line(info, "a.dcm", f"malformed {keyword} tag")
    assert "many" not in caplog.text  # pydicom logs "Invalid value for VR IS: 'many'" unless hushed


# ---- malformed display tags -------------------------------------------------------------------------------------

HUGE = b"9" * 3000 + b"x"


@pytest.mark.parametrize("center, width", [(b"abc", b"400"), (b"40", b"nan"), (b"inf", b"400"), (b"40", b"0"),
                                           (b"40", b"-5"), (HUGE, b"400"), (b"1\\x", b"y\\2")])
def test_malformed_window_is_ignored_with_a_warning(tmp_path, stored12, caplog, center, width):
    path = dicom(tmp_path / "a.dcm", stored12, raw={"WindowCenter": (center, "DS"), "WindowWidth": (width, "DS")})
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        image = read_image(path)
    np.testing.assert_allclose(image, stored12 / 4095, atol=1e-6)  # the stored range, as without a window
    (record,) = [r for r in caplog.records if "WindowCenter" in r.getMessage()]
    assert "a.dcm" in record.getMessage() and "999" not in record.getMessage() and "abc" not in caplog.text


def test_empty_window_means_no_window(tmp_path, stored12, caplog):
    path = dicom(tmp_path / "a.dcm", stored12, raw={"WindowCenter": (b"", "DS"), "WindowWidth": (b"", "DS")})
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(read_image(path), stored12 / 4095, atol=1e-6)
    assert not caplog.records


@pytest.mark.parametrize("keyword, value", [("RescaleSlope", b"abc"), ("RescaleSlope", b"nan"),
                                            ("RescaleSlope", b"1\\2"), ("RescaleIntercept", HUGE),
                                            ("RescaleIntercept", b"-inf"), ("RescaleIntercept", b"1\\2\\3")])
def test_malformed_rescale_is_one_line_without_the_value(tmp_path, stored12, keyword, value):
    path = dicom(tmp_path / "a.dcm", stored12, raw={keyword: (value, "DS")})
    with pytest.raises(DataError) as info:
        read_image(path)
    text = _one_line(info, "a.dcm", f"malformed {keyword} tag", "fix or remove the tag")
    assert "999" not in text and "abc" not in text and SECRET not in text


def test_zero_slope_is_taken_as_one_with_a_warning(tmp_path, stored12, caplog):
    path = dicom(tmp_path / "a.dcm", stored12, raw={"RescaleSlope": (b"0", "DS")})
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(read_image(path), stored12 / 4095, atol=1e-6)
    assert "RescaleSlope 0" in caplog.text


def test_empty_rescale_means_identity(tmp_path, stored12):
    path = dicom(tmp_path / "a.dcm", stored12, raw={"RescaleSlope": (b"", "DS"), "RescaleIntercept": (b" ", "DS")})
    np.testing.assert_allclose(read_image(path), stored12 / 4095, atol=1e-6)
