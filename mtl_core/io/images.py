"""Read a medical or ordinary image file as a 2-D float32 array in [0, 1].

:func:`read_image` is the one entry point. It reads PNG, JPEG, TIFF and BMP through Pillow and DICOM through
pydicom, and dispatches other suffixes to readers that plugins add with :func:`register_reader`.

Grey levels are normalised by the bit depth's maximum, so 0 is black and 1 is white:

* 8-bit images are divided by 255; colour images become luminance (ITU-R BT.601 weights); palette images are
  converted through their palette; an alpha channel is ignored.
* 16-bit images are divided by 65535, *except* that a 16-bit image whose largest value is at most 4095 is taken to
  hold 12-bit data (as many radiographs do) and is divided by 4095. A genuine 16-bit image that happens to be
  that dark is brightened by the same rule; store it as a DICOM with a window to avoid that.
* DICOM: the rescale slope and intercept are applied, then the first WindowCenter/WindowWidth pair when present
  (the DICOM linear VOI function), else the full range that BitsStored allows; MONOCHROME1 is inverted so that
  high values are always bright. Only the pixel data and display tags are used; patient identifiers are never
  returned, logged or quoted in errors.

Example:
    >>> from mtl_core.io.images import read_image, supported_suffixes
    >>> ".png" in supported_suffixes()
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import DataError, MTLError, PluginError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from pydicom import Dataset

Reader = Callable[[Path], np.ndarray]

_DICOM_MAGIC_OFFSET = 128
_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
_TWELVE_BIT_MAX = 4095

_READERS: dict[str, Reader] = {}


def register_reader(suffix: str, fn: Reader, *, overwrite: bool = False) -> None:
    """Register ``fn`` as the reader for files ending in ``suffix`` (case-insensitive, e.g. ``".img"``).

    Args:
        suffix: File suffix with or without the leading dot.
        fn: Callable taking a :class:`~pathlib.Path` and returning a 2-D array in [0, 1]. It should raise
            :class:`~mtl_core.errors.DataError` for a bad file.
        overwrite: Replace an existing reader instead of raising.

    Raises:
        MTLError: ``suffix`` is empty or already has a reader and ``overwrite`` is false.
    """
    key = _normalise_suffix(suffix)
    if key == ".":
        raise MTLError(f"cannot register an image reader for the empty suffix {suffix!r}; pass e.g. '.img'")
    if key in _READERS and not overwrite:
        raise MTLError(f"an image reader for {key!r} is already registered; pass overwrite=True to replace it")
    _READERS[key] = fn


def supported_suffixes() -> tuple[str, ...]:
    """Return the lower-case suffixes :func:`read_image` can read, sorted."""
    return tuple(sorted(_READERS))


def core_reader_id(suffixes: Iterable[str]) -> str | None:
    """Identity of :func:`read_image` for a plugin's ``reader_id()`` when the core's own readers (Pillow, pydicom)
    read every file suffix in ``suffixes``; None when a plugin-registered reader would read one, or none is given.

    Plugins that read the same files this way then share feature-cache entries: the same pixels get the very same
    stored features, not features recomputed in other batches, whose convolutions round differently.
    """
    keys = {_normalise_suffix(s) for s in suffixes}
    if not keys or any(_READERS.get(k) not in (_read_pillow, _read_dicom) for k in keys):
        return None
    return f"mtl_core.imaging.read_image:{__version__}"


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a grayscale float32 array of shape (H, W) with values in [0, 1].

    A file whose bytes 128-131 read ``DICM`` is read as DICOM whatever its suffix; any other file is dispatched on
    its suffix. See the module docstring for how grey levels are normalised.

    Args:
        path: The image file.

    Returns:
        The image, ``float32``, shape (H, W), values in [0, 1].

    Raises:
        DataError: The file is missing, empty, truncated, corrupt, of an unsupported type, or a DICOM without
            pixel data.
        PluginError: A registered reader returned something other than a 2-D array in [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "does not exist"
        raise DataError(f"image {path} {what}; check the path and the data folder layout")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is an empty (zero-byte) file; re-copy or re-download it")
    reader = _read_dicom if _has_dicom_magic(path) else _READERS.get(_normalise_suffix(path.suffix))
    if reader is None:
        raise DataError(
            f"image {path} has unsupported suffix {path.suffix!r}; supported: {', '.join(supported_suffixes())}"
        )
    return _check_output(path, reader(path))


def _normalise_suffix(suffix: str) -> str:
    suffix = suffix.strip().lower()
    return suffix if suffix.startswith(".") else "." + suffix


def _has_dicom_magic(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(_DICOM_MAGIC_OFFSET)
        return f.read(4) == b"DICM"


def _check_output(path: Path, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    tol = 1e-5  # rounding in the luminance weights or a rescale may overshoot [0, 1] by an ulp or two
    bad = image.ndim != 2 or image.size == 0 or not np.all(np.isfinite(image))
    if bad or image.min() < -tol or image.max() > 1 + tol:
        raise PluginError(
            f"the reader for {path.suffix!r} returned shape {image.shape} for {path}; "
            "a reader must return a finite, non-empty 2-D array with values in [0, 1]"
        )
    return np.clip(image, 0.0, 1.0)


def _read_pillow(path: Path) -> np.ndarray:
    """Read a Pillow-supported file; the first frame of a multi-frame file (TIFF) is used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # Image.open is lazy: force a full decode so truncation shows here
            return _pillow_to_array(path, img)
    except UnidentifiedImageError:
        raise DataError(f"image {path} is not a readable image (wrong suffix, or not an image at all); re-copy it, "
                        f"or convert it to PNG, JPEG or DICOM") from None
    except Image.DecompressionBombError:
        raise DataError(f"image {path} is too large for Pillow's decompression-bomb limit") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"image {path} is truncated or corrupt ({reason}); re-copy or re-download it") from None


def _pillow_to_array(path: Path, img: PILImage) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    if mode in ("P", "PA"):  # through the palette; RGBA keeps Pillow quiet about palette transparency
        return _luminance(np.asarray(img.convert("RGBA"))) / 255.0
    if mode.startswith("I;16") or mode == "I":
        return _normalise_16bit(path, np.asarray(img))
    if mode == "F":
        return _normalise_float(path, np.asarray(img, dtype=np.float64))
    return _luminance(np.asarray(img.convert("RGB"))) / 255.0


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ _LUMA


def _normalise_16bit(path: Path, values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > 65535:
        raise DataError(
            f"image {path} holds integers from {lo} to {hi}, outside 0..65535; save it as 8- or 16-bit unsigned"
        )
    return values / (_TWELVE_BIT_MAX if hi <= _TWELVE_BIT_MAX else 65535)


def _normalise_float(path: Path, values: np.ndarray) -> np.ndarray:
    """Keep floats already in [0, 1]; stretch any other finite range to [0, 1]."""
    if not np.all(np.isfinite(values)):
        raise DataError(f"image {path} contains NaN or infinite pixel values; expected finite grey levels")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        return values
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    # pydicom's warnings can quote element values (names, IDs): silence them rather than risk a leak.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:  # pydicom raises many types for broken files
            raise DataError(f"DICOM {path} cannot be parsed ({type(exc).__name__}); re-export it") from None
        if "PixelData" not in ds:
            hint = "" if _has_dicom_magic(path) else " and no 'DICM' marker, so it may not be DICOM at all"
            raise DataError(f"DICOM {path} has no pixel data (PixelData){hint}; expected a DICOM image: re-export it "
                            f"with its pixel data")
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
            raise DataError(
                f"DICOM {path} pixel data cannot be decoded (transfer syntax {syntax}, {type(exc).__name__}); "
                "the file may be truncated, or needs a decoder such as pylibjpeg or gdcm"
            ) from None
    return _dicom_to_unit(path, ds, pixels)


def _dicom_to_unit(path: Path, ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3:
        return _luminance(pixels) / float(2 ** int(ds.get("BitsStored", 8)) - 1)
    if pixels.ndim != 2:
        raise DataError(f"DICOM {path} has pixel data of shape {pixels.shape}; expected one 2-D grayscale frame")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float64) * slope + intercept
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        out = _apply_window(values, center, width)
    else:
        bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        stored_lo, stored_hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        lo, hi = sorted((stored_lo * slope + intercept, stored_hi * slope + intercept))
        out = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - out if photometric == "MONOCHROME1" else out


def _first(value: object) -> float | None:
    """First value of a possibly multi-valued DICOM element, or None when absent or empty."""
    if value is None or isinstance(value, (str, bytes)) and not value.strip():
        return None
    if not isinstance(value, (int, float, str, bytes)):  # pydicom MultiValue
        value = value[0] if len(value) else None  # type: ignore[index, arg-type]
    return None if value is None else float(value)  # type: ignore[arg-type]


def _apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI function (PS3.3 C.11.2.1.2) mapped to [0, 1]."""
    if width <= 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


for _suffix in _PILLOW_SUFFIXES:
    register_reader(_suffix, _read_pillow)
for _suffix in _DICOM_SUFFIXES:
    register_reader(_suffix, _read_dicom)
