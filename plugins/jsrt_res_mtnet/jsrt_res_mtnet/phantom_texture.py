"""Lung parenchyma of the chest phantom: vessel trees and power-law density noise, as attenuation.

* **Vessels**: a tree from each hilum; each generation is ~0.75x as wide and ~0.8x as long as its parent, and a
  branch splits unevenly. Segments are splatted as volume per pixel and blurred to their width (three width
  classes) in the Fourier domain; ``VESSEL_BUNDLE`` adds the bronchial wall and interstitium around them.
* **Noise**: power-law ("anatomical") noise with spectrum ``(f^2 + f0^2)^(-3/2)`` (Burgess et al. 2001, for
  anatomical backgrounds), defined in cycles/mm so its look does not depend on the image size.

Both are weighted by the local air path, so they only show in the lungs.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from jsrt_res_mtnet.phantom_grid import MU_LUNG, MU_TISSUE, Grid

TRUNK_ANGLES = np.array([-95.0, -130.0, -165.0, 165.0, 130.0, 100.0])  # degrees, right lung; mirrored for the left
VESSEL_BUNDLE = 1.5  # a vessel's cuff of bronchial wall and interstitium: its density relative to blood alone
TEXTURE_SIGMA_MM = 2.5  # std of the parenchymal density noise, in mm of soft-tissue equivalent
TEXTURE_F0 = 1.0 / 30.0  # cycles/mm: the power law flattens below this frequency


def vessel_tree(hilum: np.ndarray, angles_deg: np.ndarray, rng: np.random.Generator, levels: int = 6) -> np.ndarray:
    """Branching segments from a hilum: each generation is ~0.75x as wide and ~0.8x as long as its parent.

    A branch splits unevenly (one child keeps close to the parent's course), as pulmonary arteries do.
    """
    n = len(angles_deg)
    start = hilum + rng.normal(0.0, 25.0, (n, 2))
    angle = np.deg2rad(angles_deg + rng.normal(0.0, 10.0, n))
    diameter = rng.uniform(7.0, 10.0, n)
    segments = []
    for level in range(levels):
        length = 210.0 * 0.8**level * rng.uniform(0.6, 1.3, len(angle))
        end = start + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        segments.append(np.column_stack([start, end, diameter, np.full(len(angle), level)]))
        turn = np.deg2rad(np.stack([rng.uniform(3.0, 20.0, len(angle)), rng.uniform(20.0, 50.0, len(angle))], 1))
        turn *= np.where(rng.uniform(size=(len(angle), 1)) < 0.5, 1.0, -1.0) * [1.0, -1.0]
        angle = (angle[:, None] + turn).ravel()
        diameter = (diameter[:, None] * [0.82, 0.66] * rng.uniform(0.9, 1.1, (len(diameter), 2))).ravel()
        start = np.repeat(end, 2, axis=0)
    return np.concatenate(segments)


def parenchyma(vessels: np.ndarray, grid: Grid, air: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Attenuation of the vessels and the power-law density noise, weighted by the lung depth."""
    size, mm = grid.size, grid.mm_per_px
    fy = fft.fftfreq(size, d=mm)[:, None]
    fx = fft.rfftfreq(size, d=mm)[None, :]
    f2 = fx * fx + fy * fy
    spectrum = _power_law(f2) / mm
    noise = rng.standard_normal((2, size, size // 2 + 1), dtype=np.float32)
    total = (noise[0] + 1j * noise[1]) * np.float32(np.sqrt(0.5)) * spectrum.astype(np.float32)
    splats, sigmas_mm = _splat_vessels(vessels, grid)
    blur = np.exp(-2.0 * np.pi**2 * sigmas_mm[:, None, None] ** 2 * f2[None]).astype(np.float32)
    total += (fft.rfft2(splats, norm="ortho") * blur).sum(axis=0)
    field = fft.irfft2(total, s=(size, size), norm="ortho")  # mm of soft-tissue equivalent
    weight = np.minimum(air * 2.5, 1.0)
    return ((MU_TISSUE - MU_LUNG) * field * weight).astype(np.float32)


def _power_law(f2: np.ndarray) -> np.ndarray:
    """Amplitude spectrum whose 2-D integral of the square is ``TEXTURE_SIGMA_MM^2`` (beta = 3, no DC)."""
    c = TEXTURE_SIGMA_MM**2 * TEXTURE_F0 / (2 * np.pi)
    amplitude = np.sqrt(c * (f2 + TEXTURE_F0**2) ** -1.5)
    amplitude[0, 0] = 0.0
    return amplitude


def _splat_vessels(vessels: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Deposit vessel volume (mm^3 per pixel area) along the segments, one layer per width class."""
    classes = np.minimum(vessels[:, 5], 2).astype(int)  # generations 0 | 1 | 2+
    length = np.hypot(vessels[:, 2] - vessels[:, 0], vessels[:, 3] - vessels[:, 1]) / grid.step  # output px
    counts = np.ceil(length / 0.5).astype(int) + 1
    seg = np.repeat(np.arange(len(vessels)), counts)
    t = (np.arange(seg.size) - np.repeat(np.cumsum(counts) - counts, counts) + 0.5) / counts[seg]
    x = grid.index(vessels[seg, 0] + t * (vessels[seg, 2] - vessels[seg, 0]))
    y = grid.index(vessels[seg, 1] + t * (vessels[seg, 3] - vessels[seg, 1]))
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    keep = (ix >= 0) & (ix < grid.size) & (iy >= 0) & (iy < grid.size)
    volume = np.pi / 4 * vessels[seg, 4] ** 2 * (length[seg] / counts[seg] * grid.mm_per_px)  # mm^3
    flat = (classes[seg] * grid.size + iy) * grid.size + ix
    size2 = grid.size * grid.size
    splat = np.bincount(flat[keep], VESSEL_BUNDLE * volume[keep] / grid.mm_per_px**2, minlength=3 * size2)
    diameters = np.array([vessels[classes == c, 4].mean() for c in range(3)])
    sigmas_mm = np.maximum(diameters / 2.5, 0.6 * grid.mm_per_px)
    return splat.reshape(3, grid.size, grid.size).astype(np.float32), sigmas_mm
