"""Limits on what an image file may decode to, checked before any pixel is decoded.

A PNG of a few hundred KB can decode to 100+ megapixels, and a deflated DICOM of 300 KB inflate to 650 MB: a
decompression bomb. :func:`image_limits` says what :func:`~mtl_core.io.images.read_image` accepts: at most
:data:`DEFAULT_MAX_PIXELS` pixels an image and :data:`DEFAULT_MAX_DICOM_BYTES` bytes a DICOM data set, unless the
environment variables ``MTL_MAX_IMAGE_PIXELS`` / ``MTL_MAX_DICOM_BYTES`` or :func:`set_image_limits` say otherwise.
See ``docs/limits.md``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import ConfigError, DataError

#: decoded pixels an image may hold: 8192 x 8192. Digitised chest films are about 2048 x 2048 (4.2 MP),
#: mammograms about 4000 x 5000 (20 MP) and large detector plates 4300 x 4300 (18.5 MP), so a genuine image fits
#: with room to spare, while the float64 working copies of one (8 bytes a pixel, a few at a time) stay near
#: 1.5 GB at worst.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: bytes a DICOM data set may hold, inflated when it is deflated: 256 MiB, 32 bits for every allowed pixel
DEFAULT_MAX_DICOM_BYTES = 256 * 2**20
PIXELS_ENV, DICOM_BYTES_ENV = "MTL_MAX_IMAGE_PIXELS", "MTL_MAX_DICOM_BYTES"
_OVERRIDES: dict[str, int] = {}


@dataclass(frozen=True)
class ImageLimits:
    """What :func:`read_image` accepts before decoding a file.

    Attributes:
        max_pixels: pixels an image may hold (width x height, times frames for a DICOM).
        max_dicom_bytes: bytes a DICOM data set may hold (its file, or what it inflates to when deflated; and what
            its declared pixel data decodes to).
    """

    max_pixels: int
    max_dicom_bytes: int


def set_image_limits(max_pixels: int | None = None, max_dicom_bytes: int | None = None) -> None:
    """Override the limits of :func:`read_image` in this process (a ``None`` leaves that limit as it is).

    They take precedence over ``MTL_MAX_IMAGE_PIXELS`` and ``MTL_MAX_DICOM_BYTES``; :func:`reset_image_limits`
    goes back to those. Processes started with ``spawn`` do not inherit them: set the variables there instead.

    Example:
        >>> set_image_limits(max_pixels=200_000_000)  # a whole-slide scan of 14000 x 14000
        >>> image_limits().max_pixels
        200000000
        >>> reset_image_limits()

    Raises:
        ConfigError: a limit is not a positive integer.
    """
    for key, value in (("max_pixels", max_pixels), ("max_dicom_bytes", max_dicom_bytes)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"image limit {key} must be a positive integer, got {str(value)[:40]!r}")
        _OVERRIDES[key] = value


def reset_image_limits() -> None:
    """Forget :func:`set_image_limits`: the environment variables, else the defaults, apply again."""
    _OVERRIDES.clear()


def image_limits() -> ImageLimits:
    """The limits in force: :func:`set_image_limits`, else the environment variables, else the defaults.

    Raises:
        ConfigError: an environment variable is set to something other than a positive whole number.
    """
    return ImageLimits(_OVERRIDES.get("max_pixels") or positive_int_env(PIXELS_ENV, DEFAULT_MAX_PIXELS),
                       _OVERRIDES.get("max_dicom_bytes") or positive_int_env(DICOM_BYTES_ENV, DEFAULT_MAX_DICOM_BYTES))


def positive_int_env(name: str, default: int) -> int:
    """The positive whole number in environment variable ``name`` (``100000000``, ``100_000_000`` or ``1e8``),
    ``default`` when it is unset or empty.

    Raises:
        ConfigError: it is set to anything else.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.replace("_", ""))  # 100000000, 100_000_000 and 1e8 all work
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 1 or not value.is_integer():
        raise ConfigError(f"environment variable {name}={text[:40]!r} is not a positive whole number; set e.g. "
                          f"{name}={default} or unset it")
    return int(value)


def too_many_pixels(what: str, count: int, limit: int) -> DataError:
    """``what`` says the size (``image X is 9000 x 9000 = 81,000,000 pixels``); ``count`` is what would fit it."""
    return DataError(f"{what}, over the limit of {limit:,} pixels (a decompression bomb, or an unusually large "
                     f"image); if it is genuine, raise the limit: {PIXELS_ENV}={count} or "
                     f"mtl_core.io.set_image_limits(max_pixels=...)")


def too_many_bytes(what: str, limit: int) -> DataError:
    return DataError(f"{what}, over the limit of {limit:,} bytes (a decompression bomb, or an unusually large "
                     f"file); if it is genuine, raise the limit: {DICOM_BYTES_ENV}=... or "
                     f"mtl_core.io.set_image_limits(max_dicom_bytes=...)")
