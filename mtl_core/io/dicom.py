"""Read a DICOM image with pydicom: size and inflation checked before decoding, display tags checked as they are
applied. See :mod:`mtl_core.io.images` for how grey levels are normalised; patient identifiers are never returned,
logged or quoted in errors, and neither is the value of a malformed tag (it may be anything, of any length)."""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from .limits import ImageLimits, image_limits, too_many_bytes, too_many_pixels

if TYPE_CHECKING:
    from pydicom import Dataset

log = logging.getLogger(__name__)

DICOM_MAGIC_OFFSET = 128
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole data set is deflated
_LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
_MALFORMED = object()  # a tag whose value pydicom could not convert


class _Hush(logging.Filter):
    """Drops the records of pydicom's logger while this thread reads a DICOM: pydicom logs (besides warning)
    "Invalid value for VR IS: '...'", quoting any element's value, a patient's name or 3000 characters of junk."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "reading", False)


_HUSH = _Hush()
logging.getLogger("pydicom").addFilter(_HUSH)


@contextmanager
def _quiet() -> Iterator[None]:
    """Neither pydicom's warnings nor its log records while reading (they can quote element values)."""
    _HUSH.local.reading = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _HUSH.local.reading = False


def has_dicom_magic(path: Path) -> bool:
    """Whether bytes 128-131 of ``path`` read ``DICM``."""
    with path.open("rb") as f:
        f.seek(DICOM_MAGIC_OFFSET)
        return f.read(4) == b"DICM"


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey levels of an (..., 3 or 4) colour array by the ITU-R BT.601 weights (alpha ignored), float64."""
    return rgb[..., :3].astype(np.float64) @ _LUMA


def read_dicom(path: Path) -> np.ndarray:
    """Read a DICOM file as a 2-D float64 array in [0, 1] (see :mod:`mtl_core.io.images`).

    Raises:
        DataError: the file is over the limits, cannot be parsed, has no or malformed pixel data, size or rescale
            tags.
    """
    import pydicom

    limits = image_limits()
    _check_dicom_bytes(path, limits.max_dicom_bytes)
    # pydicom's warnings and log records can quote element values (names, IDs): silence them rather than risk a leak.
    with _quiet():
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:  # pydicom raises many types for broken files
            raise DataError(f"DICOM {path} cannot be parsed ({type(exc).__name__}); re-export it") from None
        if "PixelData" not in ds:
            hint = "" if has_dicom_magic(path) else " and no 'DICM' marker, so it may not be DICOM at all"
            raise DataError(f"DICOM {path} has no pixel data (PixelData){hint}; expected a DICOM image: re-export it "
                            f"with its pixel data")
        _check_declared_size(path, ds, limits)
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
            raise DataError(
                f"DICOM {path} pixel data cannot be decoded (transfer syntax {syntax}, {type(exc).__name__}); "
                "the file may be truncated, or needs a decoder such as pylibjpeg or gdcm"
            ) from None
        return _dicom_to_unit(path, ds, pixels)


def _check_dicom_bytes(path: Path, limit: int) -> None:
    """Refuse a DICOM file, or a deflated one's inflated data set, of more than ``limit`` bytes, before pydicom
    reads it whole into memory. The inflation is streamed and counted, never kept."""
    size = path.stat().st_size
    if size > limit:
        raise too_many_bytes(f"DICOM {path} is {size:,} bytes", limit)
    start = _deflated_start(path)
    if start is None:
        return
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with path.open("rb") as fh:
        fh.seek(start)
        while (data := fh.read(1 << 16)) and not inflater.eof:
            while data:
                try:
                    total += len(inflater.decompress(data, 1 << 20))
                except zlib.error:
                    raise DataError(f"DICOM {path} is deflated but its data cannot be inflated (corrupt or "
                                    f"truncated); re-export it") from None
                if total > limit:
                    raise too_many_bytes(f"DICOM {path} is deflated and inflates to at least {total:,} bytes",
                                         limit)
                data = inflater.unconsumed_tail


def _deflated_start(path: Path) -> int | None:
    """Where the deflated data set of a DICOM file in Deflated Explicit VR Little Endian begins; None for any other
    transfer syntax (or no file meta information). Walks the file meta group (explicit VR little endian)."""
    with path.open("rb") as fh:
        fh.seek(DICOM_MAGIC_OFFSET)
        if fh.read(4) != b"DICM":
            return None
        syntax = b""
        while len(head := fh.read(8)) == 8:
            group, element = int.from_bytes(head[:2], "little"), int.from_bytes(head[2:4], "little")
            if group != 2:
                return fh.tell() - 8 if syntax.rstrip(b"\0 ") == _DEFLATED.encode() else None
            length = int.from_bytes(head[6:8], "little")
            if head[4:6] in _LONG_VRS:
                length = int.from_bytes(fh.read(4), "little")
            value = fh.read(min(length, 256))
            fh.seek(length - len(value), os.SEEK_CUR)
            if element == 0x0010:
                syntax = value
    return None


def _check_declared_size(path: Path, ds: Dataset, limits: ImageLimits) -> None:
    """Refuse a DICOM whose declared size is malformed or over the limits, before its pixels are decoded."""
    rows, columns = _integer_tag(path, ds, "Rows"), _integer_tag(path, ds, "Columns")
    frames = _integer_tag(path, ds, "NumberOfFrames", 1)
    samples = _integer_tag(path, ds, "SamplesPerPixel", 1)
    bits = _integer_tag(path, ds, "BitsAllocated", 16)
    pixels = rows * columns * frames
    shape = f"{rows} x {columns}" + (f" x {frames} frames" if frames > 1 else "")
    if pixels > limits.max_pixels:
        raise too_many_pixels(f"DICOM {path} declares {shape} = {pixels:,} pixels", pixels, limits.max_pixels)
    decoded = pixels * samples * max(1, bits // 8)
    if decoded > limits.max_dicom_bytes:
        raise too_many_bytes(f"DICOM {path} declares {shape} pixels of {samples} x {bits} bits = {decoded:,} "
                              f"bytes", limits.max_dicom_bytes)
    if frames > 1:
        raise DataError(f"DICOM {path} has {frames} frames; expected one 2-D grayscale frame: export the frame "
                        f"to use as a file of its own")


def _tag(ds: Dataset, keyword: str) -> Any:
    """A tag's value; a value pydicom cannot even convert counts as malformed (None: absent or empty)."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom raises many types for a bad value; never quote the value
        return _MALFORMED
    if value is None or isinstance(value, (str, bytes)) and not value.strip():
        return None
    return value



def _integer_tag(path: Path, ds: Dataset, keyword: str, default: int | None = None) -> int:
    """A positive whole-number tag of one value (a size or bit depth): anything else is one DataError line."""
    value = _tag(ds, keyword)
    if value is None and default is not None:
        return default
    number = _single_number(value)
    if number is None or number < 1 or not number.is_integer():
        what = "no" if value is None else "a malformed"
        raise DataError(f"DICOM {path} has {what} {keyword} tag (expected one whole number >= 1); the file is "
                        f"damaged or not an image: re-export it")
    return int(number)


def _single_number(value: Any) -> float | None:
    """``value`` as one finite number; None when it is several values, not a number, NaN or infinite."""
    if value is None or value is _MALFORMED or not isinstance(value, (int, float, str, bytes)):
        return None  # a pydicom MultiValue holds several
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _rescale(path: Path, ds: Dataset, keyword: str, default: float) -> float:
    value = _tag(ds, keyword)
    if value is None:
        return default
    number = _single_number(value)
    if number is None:
        raise DataError(f"DICOM {path} has a malformed {keyword} tag (expected one finite number); it defines what "
                        f"the pixel values mean: fix or remove the tag, or re-export the file")
    if keyword == "RescaleSlope" and number == 0:  # as before: a slope of 0 would make every pixel the same
        log.warning("DICOM %s has RescaleSlope 0, which would make every pixel the same; taken as 1", path)
        return 1.0
    return number


def _window(path: Path, ds: Dataset) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair; None (with a warning when malformed) when there is none."""
    center, width = _tag(ds, "WindowCenter"), _tag(ds, "WindowWidth")
    if center is None or width is None:
        return None
    center, width = _single_number(_first(center)), _single_number(_first(width))
    if center is None or width is None or width < 1:
        log.warning("DICOM %s has a malformed WindowCenter/WindowWidth (expected finite numbers, a width >= 1); "
                    "ignored: shown over the stored range", path)
        return None
    return center, width


def _first(value: Any) -> Any:
    """The first value of a multi-valued element (several window presets: the first is the default)."""
    if value is _MALFORMED or isinstance(value, (int, float, str, bytes)):
        return value
    try:
        return value[0] if len(value) else None
    except TypeError:
        return None


def _dicom_to_unit(path: Path, ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = _integer_tag(path, ds, "BitsStored", pixels.dtype.itemsize * 8)
    if pixels.ndim == 3 and _integer_tag(path, ds, "SamplesPerPixel", 1) == 3:
        return luminance(pixels) / float(2**bits - 1)
    if pixels.ndim != 2:
        raise DataError(f"DICOM {path} has pixel data of shape {pixels.shape}; expected one 2-D grayscale frame")
    slope, intercept = _rescale(path, ds, "RescaleSlope", 1.0), _rescale(path, ds, "RescaleIntercept", 0.0)
    values = pixels.astype(np.float64) * slope + intercept
    window = _window(path, ds)
    if window is not None:
        out = _apply_window(values, *window)
    else:
        signed = _tag(ds, "PixelRepresentation") in (1, "1")
        stored_lo, stored_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        lo, hi = sorted((stored_lo * slope + intercept, stored_hi * slope + intercept))
        out = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - out if photometric == "MONOCHROME1" else out


def _apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    if width <= 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
