"""Read and write the original headerless JSRT ``.IMG`` files.

An original JSRT image is 2048 x 2048 pixels of big-endian unsigned 16-bit integers with no header (8,388,608
bytes), of which 12 bits are used (0..4095). In the ``.IMG`` files a *larger* value is *darker* on display (more
film density, as DICOM's MONOCHROME1), whereas the common PNG copies show air and lungs dark and bone bright.
:func:`read_jsrt_img` converts to the PNG convention, ``1 - value / 4095``, so a model sees the same grey levels
whichever copy of JSRT it is given; :func:`write_jsrt_img` is its exact inverse up to 12-bit quantisation.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "JPCNN001.IMG"
    >>> write_jsrt_img(path, np.full((2048, 2048), 0.25))
    >>> round(float(read_jsrt_img(path)[0, 0]), 3)
    0.25
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtl_core import DataError

JSRT_SHAPE = (2048, 2048)
JSRT_DTYPE = np.dtype(">u2")
JSRT_BYTES = JSRT_SHAPE[0] * JSRT_SHAPE[1] * JSRT_DTYPE.itemsize  # 8,388,608
JSRT_MAX = 4095  # 12 bits stored
IMG_SUFFIX = ".img"


def read_jsrt_img(path: str | Path) -> np.ndarray:
    """Read a JSRT ``.IMG`` file as float32 (2048, 2048) in [0, 1], lungs dark and bone bright.

    Args:
        path: The raw ``.IMG`` file.

    Returns:
        ``1 - value / 4095`` as float32, shape (2048, 2048).

    Raises:
        DataError: The file is missing, has the wrong size, or holds values above 4095 (not 12-bit big-endian).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"JSRT image {path} does not exist; check the data folder")
    size = path.stat().st_size
    if size != JSRT_BYTES:
        raise DataError(
            f"JSRT image {path} has {size:,} bytes; a raw JSRT .IMG (2048x2048, 16-bit) has {JSRT_BYTES:,} bytes: "
            "re-copy it from the JSRT archive"
        )
    values = np.fromfile(path, dtype=JSRT_DTYPE).reshape(JSRT_SHAPE)
    top = int(values.max())
    if top > JSRT_MAX:
        raise DataError(
            f"JSRT image {path} holds values up to {top}, above the 12-bit maximum {JSRT_MAX}; "
            "expected a big-endian raw JSRT .IMG (a little-endian or converted file reads like this)"
        )
    return (1.0 - values.astype(np.float32) / JSRT_MAX).astype(np.float32)


def write_jsrt_img(path: str | Path, array01: np.ndarray) -> None:
    """Write a (2048, 2048) array in [0, 1] (lungs dark) as a raw JSRT ``.IMG``; the inverse of :func:`read_jsrt_img`.

    The file is written to a temporary name beside ``path`` and renamed into place.

    Args:
        path: Destination file.
        array01: Grey levels in [0, 1], shape (2048, 2048), PNG convention (high = bright).

    Raises:
        DataError: The array has the wrong shape or values outside [0, 1].
    """
    path = Path(path)
    image = np.asarray(array01, dtype=np.float64)
    if image.shape != JSRT_SHAPE:
        raise DataError(f"cannot write {path}: array shape {image.shape}, a JSRT image must be {JSRT_SHAPE}")
    if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
        raise DataError(f"cannot write {path}: values must be finite and within [0, 1]")
    values = np.rint((1.0 - image) * JSRT_MAX).astype(JSRT_DTYPE)
    tmp = path.with_name(f".{path.name}.tmp")
    values.tofile(tmp)
    os.replace(tmp, path)


def register_img_reader() -> None:
    """Make :func:`mtl_core.read_image` read ``.IMG`` files with :func:`read_jsrt_img`; safe to repeat."""
    from mtl_core import register_reader, supported_suffixes

    if IMG_SUFFIX not in supported_suffixes():
        register_reader(IMG_SUFFIX, read_jsrt_img)
