"""Deterministic synthetic JSRT-like chest radiographs, so the whole framework runs offline.

:func:`generate_phantom` writes the Kaggle layout (``jsrt_metadata.csv`` plus ``images/<study_id>``) with labels
whose distributions follow the real table (see :mod:`jsrt_res_mtnet.phantom_labels`) and images rendered from a
simple physical model (see :mod:`jsrt_res_mtnet.phantom_anatomy` and :mod:`jsrt_res_mtnet.phantom_texture`):

1. Attenuation ``A`` (line integral of mu) of body, lungs, heart, domes, bones, vessels and power-law parenchymal
   noise.
2. A nodule adds ``amplitude * profile`` (see :mod:`jsrt_res_mtnet.phantom_nodule`): benign smooth and round to
   oval with a well-defined margin, malignant lobulated with an ill-defined margin and thin spicules. Its mean
   diameter is the ``size`` column in mm, its centre ``(x, y)``; its lung is bulged, if needed, to contain it.
3. Quantum noise in the log-exposure domain: ``sigma_A = exp(A / 2) / sqrt(PHOTONS_PER_MM2 * pixel area)``, so
   dense regions and small pixels are noisier.
4. Display: a film-like sigmoid of ``A`` (air and lungs dark; bone, mediastinum and abdomen bright), the PNG
   convention. 8-bit files hold ``round(255 * grey)``; 16-bit PNGs ``round(65535 * grey)``: the full 16-bit range,
   not the 12 bits of the original JSRT files.

**Contrast schedule.** A nodule's peak contrast, the largest grey-level rise it causes (grey levels in [0, 1]), is
``CONTRAST_SCHEDULE[subtlety] * sigma``: 0.6, 1.1, 2.0, 3.5 and 6.0 sigma for subtlety 1..5. ``sigma`` is the local
texture: the standard deviation of the texture terms of ``A`` (ribs, vessels, parenchymal noise, quantum noise; not
the smooth anatomy) over the lung pixels of a disc around the nodule, radius ``max(2 * nodule radius,
TEXTURE_WINDOW_MM)``, turned into grey levels by the display's slope at the nodule. It is measured at the
resolution being generated. So a subtlety-1 nodule stays below the texture, as the subtle JSRT nodules do, and a
subtlety-5 one stands out clearly. The amplitude is solved for, so a nodule's density does not follow its size.
Where the display nearly saturates (behind the heart or a dome) the rise is capped at ``HEADROOM`` of the grey
levels left above the background.

Example:
    >>> import tempfile
    >>> root = generate_phantom(tempfile.mkdtemp(), size=64, n_nodule=2, n_non_nodule=1)
    >>> sorted(p.name for p in (root / "images").iterdir())
    ['JPCLN001.png', 'JPCLN002.png', 'JPCNN001.png']
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from jsrt_res_mtnet.phantom_anatomy import Chest, bones, lung_fields, sample_chest, soft_tissue
from jsrt_res_mtnet.phantom_grid import Grid, make_grid
from jsrt_res_mtnet.phantom_labels import PhantomCase, case_from_row, check_metadata, metadata_csv_text
from jsrt_res_mtnet.phantom_labels import synthesize_metadata as _synthesize
from jsrt_res_mtnet.phantom_nodule import nodule_profile
from jsrt_res_mtnet.phantom_texture import parenchyma
from mtl_core import DataError

__all__ = [
    "CONTRAST_SCHEDULE",
    "HEADROOM",
    "TEXTURE_WINDOW_MM",
    "case_rng",
    "display",
    "generate_phantom",
    "local_std",
    "render_case",
    "synthesize_metadata",
]

logger = logging.getLogger(__name__)

CONTRAST_SCHEDULE = {1: 0.6, 2: 1.1, 3: 2.0, 4: 3.5, 5: 6.0}  # peak contrast / local texture std, by subtlety
TEXTURE_WINDOW_MM = 10.0  # smallest radius of the disc where the local texture std is measured
PHOTONS_PER_MM2 = 1.0e6  # unattenuated fluence reaching the detector (sets the quantum noise)
DISPLAY_MID, DISPLAY_WIDTH = 3.1, 0.55  # sigmoid display curve: A at mid-grey, and its scale
HEADROOM = 0.6  # a nodule may use at most this share of the grey levels left above its background
NODULE_MARGIN = 40.0  # frame pixels: how far inside its lung field a nodule centre is kept
IMAGE_FORMATS = {"png": (".png",), "jpg": (".jpg", ".jpeg")}
_TABLE_STREAM = 0x7AB1E  # separates the table's random stream from the images'


def generate_phantom(
    out_dir: str | os.PathLike,
    *,
    size: int = 256,
    bit_depth: int = 8,
    nested: bool = False,
    seed: int = 0,
    metadata: pd.DataFrame | None = None,
    n_nodule: int = 154,
    n_non_nodule: int = 93,
    image_format: str = "png",
) -> Path:
    """Write a synthetic JSRT-like dataset in the Kaggle layout.

    Args:
        out_dir: Folder to fill (created if needed): ``jsrt_metadata.csv`` and ``images/`` (``images/images/`` with
            ``nested``). The CSV is written last, by rename, so its presence means the images are complete.
        size: Image side in pixels (>= 32); x, y and sizes are scaled from the 2048 frame.
        bit_depth: 8 (uint8) or 16 (uint16 PNG spanning the full 0..65535 range, not JSRT's 12 bits).
        nested: Put the images in ``images/images/`` like some Kaggle copies.
        seed: Non-negative integer; the same seed gives byte-identical files.
        metadata: Optional table with the JSRT columns; one image is rendered per row with that row's labels and
            the same table is written as the CSV. None synthesises a table (see ``n_nodule``/``n_non_nodule``).
        n_nodule: Nodule images in a synthesised table (``JPCLN001..``); ignored with ``metadata``.
        n_non_nodule: Nodule-free images in a synthesised table (``JPCNN001..``); ignored with ``metadata``.
        image_format: ``"png"`` or ``"jpg"`` (8-bit only).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        DataError: An argument is invalid, or the metadata table is malformed.
    """
    _check_arguments(size, bit_depth, seed, image_format)
    extension = IMAGE_FORMATS[image_format][0]
    if metadata is None:
        metadata = _synthesize(n_nodule, n_non_nodule, np.random.default_rng([seed, _TABLE_STREAM]), extension)
    cases = check_metadata(metadata)
    _check_study_ids(cases, image_format)
    root = Path(out_dir)
    image_dir = root / "images" / "images" if nested else root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases):
        image, _, _ = _render(case, size, case_rng(seed, case.study_id))
        _save(image, image_dir / case.study_id, bit_depth)
        if (i + 1) % 50 == 0:
            logger.info("phantom: %d/%d images written to %s", i + 1, len(cases), image_dir)
    tmp = root / "jsrt_metadata.csv.tmp"
    tmp.write_text(metadata_csv_text(metadata), encoding="utf-8")
    os.replace(tmp, root / "jsrt_metadata.csv")
    return root


def synthesize_metadata(n_nodule: int = 154, n_non_nodule: int = 93, *, seed: int = 0) -> pd.DataFrame:
    """Return the table :func:`generate_phantom` would synthesise for these counts and seed (PNG study ids)."""
    _check_arguments(32, 8, seed, "png")
    return _synthesize(n_nodule, n_non_nodule, np.random.default_rng([seed, _TABLE_STREAM]), ".png")


def case_rng(seed: int, study_id: str) -> np.random.Generator:
    """The random stream of one image: fixed by the seed and the study id (CRC-32, stable across runs)."""
    return np.random.default_rng([seed, zlib.crc32(study_id.encode("utf-8"))])


def _check_arguments(size: object, bit_depth: object, seed: object, image_format: object) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 32 <= size <= 8192:
        raise DataError(f"size must be an integer in 32..8192, got {size!r}")
    if bit_depth not in (8, 16):
        raise DataError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if image_format not in IMAGE_FORMATS:
        raise DataError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if image_format == "jpg" and bit_depth != 8:
        raise DataError("image_format 'jpg' stores 8 bits only; use bit_depth=8 or image_format='png'")


def _check_study_ids(cases: list[PhantomCase], image_format: str) -> None:
    unsafe = [c.study_id for c in cases if Path(c.study_id).name != c.study_id or c.study_id.startswith(".")]
    if unsafe:
        raise DataError(f"study id {unsafe[0]!r} is not a plain file name; it names the image file in images/")
    wrong = [c.study_id for c in cases if not c.study_id.lower().endswith(IMAGE_FORMATS[image_format])]
    if wrong:
        raise DataError(
            f"study id {wrong[0]!r} does not end in {' or '.join(IMAGE_FORMATS[image_format])}; the image file is "
            f"named by its study id, so pass image_format matching the ids or rename them"
        )


def _save(image: np.ndarray, path: Path, bit_depth: int) -> None:
    if bit_depth == 16:
        Image.fromarray(np.rint(image * 65535.0).astype(np.uint16)).save(path, format="PNG", compress_level=4)
    elif path.suffix.lower() == ".png":
        Image.fromarray(np.rint(image * 255.0).astype(np.uint8)).save(path, format="PNG", compress_level=4)
    else:
        Image.fromarray(np.rint(image * 255.0).astype(np.uint8)).save(path, format="JPEG", quality=95)


def render_case(
    row: Mapping, size: int, rng: np.random.Generator, *, with_nodule: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one case at ``size x size``.

    Args:
        row: A metadata row (dict or Series): ``state``, and for nodules ``x``, ``y``, ``size`` (mm),
            ``subtlety``; ``gender`` optional.
        size: Image side in pixels.
        rng: Random stream. The anatomy, texture and noise are drawn in a fixed order, so the same stream gives the
            same background whatever the row's subtlety, or with ``with_nodule=False``.
        with_nodule: False leaves the nodule out (for contrast measurements).

    Returns:
        ``(image, lung_mask, nodule_mask)``: float32 in [0, 1] (bright = dense), and two bool masks, all
        ``(size, size)``. The nodule mask is empty without a nodule.
    """
    _check_arguments(size, 8, 0, "png")
    return _render(case_from_row(row), size, rng, with_nodule)


def _render(case: PhantomCase, size: int, rng: np.random.Generator, with_nodule: bool = True):
    grid = make_grid(size)
    nodule_rng = np.random.default_rng(rng.integers(2**63))
    chest = sample_chest(rng)
    mid = DISPLAY_MID + rng.normal(0.0, 0.08)
    if case.has_nodule:
        chest = _with_nodule_in_lung(chest, case, grid)
    lung_mask, air = lung_fields(chest, grid)
    texture = bones(chest, grid) + parenchyma(chest.vessels, grid, air, rng)
    atten = soft_tissue(chest, grid, air, case.female) + texture
    noise = rng.standard_normal((size, size), dtype=np.float32) / np.float32(np.sqrt(PHOTONS_PER_MM2) * grid.mm_per_px)
    nodule_mask = np.zeros_like(lung_mask)
    if not (case.has_nodule and with_nodule):
        return _expose(atten, noise, mid), lung_mask, nodule_mask
    rows, cols, profile, inside = nodule_profile(case, grid, nodule_rng)
    texture += noise * np.exp(0.5 * atten)  # quantum noise is texture too
    amplitude = _nodule_amplitude(case, grid, texture, lung_mask, atten[rows, cols], profile, mid)
    atten[rows, cols] += amplitude * profile
    nodule_mask[rows, cols] = inside
    return _expose(atten, noise, mid), lung_mask, nodule_mask


def _nodule_amplitude(case, grid, texture, lung_mask, atten, profile, mid) -> float:
    """Attenuation amplitude that gives the scheduled peak contrast (capped by the display's headroom)."""
    radius_px = case.size_mm / 2 / grid.mm_per_px
    window = max(2.0 * radius_px, TEXTURE_WINDOW_MM / grid.mm_per_px, 3.0)
    peak = np.unravel_index(int(np.argmax(profile)), profile.shape)
    base = float(atten[peak])
    slope = (float(display(base + 0.01, mid)) - float(display(base - 0.01, mid))) / 0.02
    sigma = slope * local_std(texture, lung_mask, grid.index(case.x), grid.index(case.y), window)
    headroom = 1.0 - float(display(base, mid))
    return _solve_amplitude(atten, profile, min(CONTRAST_SCHEDULE[case.subtlety] * sigma, HEADROOM * headroom), mid)


def _with_nodule_in_lung(chest: Chest, case: PhantomCase, grid: Grid) -> Chest:
    side = 0 if case.x < chest.cx else 1  # the patient's right lung is on the image left
    lungs = list(chest.lungs)
    lungs[side] = lungs[side].including(case.x, case.y, NODULE_MARGIN + 1.5 * grid.step)
    return replace(chest, lungs=tuple(lungs))


def display(atten: np.ndarray, mid: float = DISPLAY_MID) -> np.ndarray:
    """Film-like sigmoid display curve: attenuation -> grey level in [0, 1] (0 for no attenuation)."""
    low = 1.0 / (1.0 + np.exp(mid / DISPLAY_WIDTH))
    grey = (1.0 / (1.0 + np.exp((mid - atten) / DISPLAY_WIDTH)) - low) / (1.0 - low)
    return grey.astype(np.float32) if isinstance(grey, np.ndarray) else grey


def _display_inverse(grey: float, mid: float) -> float:
    low = 1.0 / (1.0 + np.exp(mid / DISPLAY_WIDTH))
    p = np.clip(low + grey * (1.0 - low), 1e-6, 1 - 1e-6)
    return float(mid + DISPLAY_WIDTH * np.log(p / (1.0 - p)))


def _expose(atten: np.ndarray, noise: np.ndarray, mid: float) -> np.ndarray:
    """Add quantum noise in the log-exposure domain, then display."""
    noisy = atten + noise * np.exp(0.5 * atten)
    return np.clip(display(noisy, mid), 0.0, 1.0)


def _solve_amplitude(atten: np.ndarray, profile: np.ndarray, target: float, mid: float) -> float:
    """Find the amplitude that makes the peak grey-level rise of ``amplitude * profile`` equal ``target``."""
    peak = np.unravel_index(int(np.argmax(profile)), profile.shape)
    base = float(atten[peak])
    amplitude = (_display_inverse(float(display(base, mid)) + target, mid) - base) / float(profile[peak])
    before = display(atten, mid)
    for _ in range(4):
        rise = float(np.max(display(atten + amplitude * profile, mid) - before))
        if rise <= 1e-6:
            break
        amplitude *= target / rise
    return amplitude


def local_std(image: np.ndarray, lung_mask: np.ndarray, cx: float, cy: float, radius: float) -> float:
    """Standard deviation of ``image`` over the lung pixels within ``radius`` pixels of ``(cx, cy)``.

    The disc doubles (up to 4 times) until it holds 9 lung pixels; the whole lung is the last resort.
    """
    for _ in range(5):
        rows = slice(max(int(cy - radius), 0), max(int(cy + radius) + 2, 0))
        cols = slice(max(int(cx - radius), 0), max(int(cx + radius) + 2, 0))
        dy, dx = np.ogrid[rows, cols]
        near = lung_mask[rows, cols] & ((dy - cy) ** 2 + (dx - cx) ** 2 <= radius**2)
        if np.count_nonzero(near) >= 9:
            return float(image[rows, cols][near].std())
        radius *= 2.0
    return float(image[lung_mask].std())
