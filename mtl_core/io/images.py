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
  returned, logged or quoted in errors. A malformed window (not a number, NaN, a width below 1) is ignored with a
  warning: the image is shown over the stored range. A malformed rescale slope or intercept, or a malformed size
  tag, is a :class:`~mtl_core.errors.DataError`: it defines what the pixel values mean.

Limits (:mod:`mtl_core.io.limits`, ``docs/limits.md``): an image may hold at most 8192 x 8192 pixels (twice the side
of a large mammogram) and a DICOM data set, inflated when it is deflated, at most 256 MiB. Both are checked before
any pixel is decoded, from the image's header and the DICOM's declared ``Rows``, ``Columns``, ``NumberOfFrames``,
``SamplesPerPixel`` and ``BitsAllocated``, so a file of a few hundred KB that would decode to gigabytes is refused
with one line. Raise them with the environment variables ``MTL_MAX_IMAGE_PIXELS`` and ``MTL_MAX_DICOM_BYTES``, or
:func:`~mtl_core.io.limits.set_image_limits`.

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
from .dicom import has_dicom_magic, luminance, read_dicom
from .limits import image_limits, too_many_pixels

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Reader = Callable[[Path], np.ndarray]

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_DICOM_SUFFIXES = (".dcm", ".dicom")
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
    if not keys or any(_READERS.get(k) not in (_read_pillow, read_dicom) for k in keys):
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
    reader = read_dicom if has_dicom_magic(path) else _READERS.get(_normalise_suffix(path.suffix))
    if reader is None:
        raise DataError(
            f"image {path} has unsupported suffix {path.suffix!r}; supported: {', '.join(supported_suffixes())}"
        )
    return _check_output(path, reader(path))


def _normalise_suffix(suffix: str) -> str:
    suffix = suffix.strip().lower()
    return suffix if suffix.startswith(".") else "." + suffix


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

    limit = image_limits().max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # Pillow refuses above twice its own limit: a raised limit of ours must hold
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below, in one line
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > limit:
                raise too_many_pixels(f"image {path} is {width} x {height} = {width * height:,} pixels",
                                       width * height, limit)
            img.load()  # Image.open is lazy: force a full decode so truncation shows here
            return _pillow_to_array(path, img)
    except UnidentifiedImageError:
        raise DataError(f"image {path} is not a readable image (wrong suffix, or not an image at all); re-copy it, "
                        f"or convert it to PNG, JPEG or DICOM") from None
    except Image.DecompressionBombError:  # over twice Pillow's limit, which is at least ours
        raise too_many_pixels(f"image {path} holds over {2 * Image.MAX_IMAGE_PIXELS:,} pixels",
                               2 * Image.MAX_IMAGE_PIXELS + 1, limit) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"image {path} is truncated or corrupt ({reason}); re-copy or re-download it") from None


def _pillow_to_array(path: Path, img: PILImage) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    if mode in ("P", "PA"):  # through the palette; RGBA keeps Pillow quiet about palette transparency
        return luminance(np.asarray(img.convert("RGBA"))) / 255.0
    if mode.startswith("I;16") or mode == "I":
        return _normalise_16bit(path, np.asarray(img))
    if mode == "F":
        return _normalise_float(path, np.asarray(img, dtype=np.float64))
    return luminance(np.asarray(img.convert("RGB"))) / 255.0


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


for _suffix in _PILLOW_SUFFIXES:
    register_reader(_suffix, _read_pillow)
for _suffix in _DICOM_SUFFIXES:
    register_reader(_suffix, read_dicom)
