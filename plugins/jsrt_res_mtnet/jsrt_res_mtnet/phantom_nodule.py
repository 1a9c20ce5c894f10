"""Nodule shapes for the chest phantom: projected thickness profiles (peak 1) and lesion masks.

* **Benign**: a smooth ellipsoid (axis ratio 0.8..1, any orientation) with a well-defined margin: profile
  ``(1 - rho^2)^p``, p in 0.5..0.8 (0.5 is a projected sphere).
* **Malignant**: an ill-defined margin (p in 0.9..1.5) on a lobulated body, radius
  ``R0 * (1 + sum_k a_k cos(k phi + phi_k))`` for k = 2..7 (a_k up to 0.1 / (k - 1)^0.8), plus 6..16
  spicules: strands 1.5..3 mm thick at the root that taper to nothing over 0.5..1.4 radii (plus 2 mm). A strand
  projects about its own thickness, so its peak relative to the body's is ``thickness / size`` (0.05..0.4): the
  spicules of a large nodule are faint, as on real radiographs.

The mean diameter is the row's ``size`` in mm. Everything is averaged over each pixel (partial volume): small
bodies are supersampled, strands are widened analytically by the pixel box. The mask holds the body and the parts
of strands that cover at least half a pixel, so thin strands leave the mask at low resolution.
"""

from __future__ import annotations

import numpy as np

from jsrt_res_mtnet.phantom_grid import Grid
from jsrt_res_mtnet.phantom_labels import PhantomCase

SPICULE_ROOT_MM = (1.5, 3.0)  # strand thickness where it leaves the body
MAX_SUPERSAMPLING = 5


def nodule_profile(
    case: PhantomCase, grid: Grid, rng: np.random.Generator
) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Return ``(rows, cols, profile, inside)``: the patch of the image the nodule covers, its projected
    thickness profile there (float32, peak ~1 before pixel averaging) and its mask (bool; never empty).
    """
    radius = case.size_mm / 2.0 / grid.mm_per_px  # output pixels
    shape = _draw_shape(radius, grid.mm_per_px, rng)
    reach = radius * 1.5 + float(shape["length"].max(initial=0.0)) + 3.0 * float(shape["sigma"].max(initial=0)) + 2
    cx, cy = grid.index(case.x), grid.index(case.y)
    rows = slice(max(int(cy - reach), 0), min(int(cy + reach) + 2, grid.size))
    cols = slice(max(int(cx - reach), 0), min(int(cx + reach) + 2, grid.size))
    ss = int(np.clip(np.ceil(6.0 / max(radius, 1e-3)), 1, MAX_SUPERSAMPLING))
    offsets = (np.arange(ss) + 0.5) / ss - 0.5
    dy = (np.arange(rows.start, rows.stop)[:, None] + offsets[None, :]).ravel()[:, None] - cy
    dx = (np.arange(cols.start, cols.stop)[:, None] + offsets[None, :]).ravel()[None, :] - cx
    body, body_in = _body(dx, dy, radius, shape, case.malignant)
    profile, inside = _pixel_mean(body, ss), _pixel_mean(body_in.astype(np.float32), ss) >= 0.5
    if case.malignant:
        dy, dx = np.arange(rows.start, rows.stop)[:, None] - cy, np.arange(cols.start, cols.stop)[None, :] - cx
        strands, strands_in = _spicules(dx, dy, radius, shape, case.size_mm)
        profile, inside = np.maximum(profile, strands), inside | strands_in
    inside.flat[int(np.argmax(profile))] = True
    return rows, cols, profile.astype(np.float32), inside


def _draw_shape(radius: float, mm_per_px: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw both the benign and malignant parameters, so the stream does not depend on the state."""
    n_spicules = int(rng.integers(6, 17))
    root_mm = rng.uniform(*SPICULE_ROOT_MM, n_spicules)
    return {
        "aspect": rng.uniform(0.8, 1.0, 1),
        "tilt": rng.uniform(0.0, np.pi, 1),
        "lobes": rng.uniform(0.02, 0.10, 6) / np.arange(1, 7) ** 0.8,
        "margin": rng.uniform(0.0, 1.0, 1),  # -> the profile's exponent, by state
        "lobe_phase": rng.uniform(0.0, 2 * np.pi, 6),
        "angle": rng.uniform(0.0, 2 * np.pi, n_spicules),
        "length": radius * rng.uniform(0.5, 1.4, n_spicules) + 2.0 / mm_per_px,
        "root_mm": root_mm,
        "sigma": root_mm / 2.5 / mm_per_px,  # Gaussian cross-section of the strand, pixels
    }


def _body(dx, dy, radius, shape, malignant: bool) -> tuple[np.ndarray, np.ndarray]:
    if malignant:
        phi = np.arctan2(dy, dx)
        k = np.arange(2, 8)[:, None, None]
        wobble = (shape["lobes"][:, None, None] * np.cos(k * phi + shape["lobe_phase"][:, None, None])).sum(axis=0)
        rim = radius * np.maximum(1.0 + wobble, 0.5) / np.sqrt(1.0 + 0.5 * (shape["lobes"] ** 2).sum())
        rho2 = (dx * dx + dy * dy) / (rim * rim)
    else:
        c, s = np.cos(shape["tilt"][0]), np.sin(shape["tilt"][0])
        a, b = radius / np.sqrt(shape["aspect"][0]), radius * np.sqrt(shape["aspect"][0])
        rho2 = ((c * dx + s * dy) / a) ** 2 + ((c * dy - s * dx) / b) ** 2
    power = (0.9 + 0.6 * shape["margin"][0]) if malignant else (0.5 + 0.3 * shape["margin"][0])
    return np.clip(1.0 - rho2, 0.0, 1.0) ** power, rho2 < 1.0


def _spicules(dx, dy, radius, shape, size_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Tapering strands from 0.8 radius outwards, sampled at pixel centres and averaged over the pixel box."""
    profile = np.zeros(np.broadcast_shapes(dx.shape, dy.shape))
    inside = np.zeros(profile.shape, bool)
    for angle, length, root_mm, sigma in zip(shape["angle"], shape["length"], shape["root_mm"], shape["sigma"],
                                             strict=True):  # fmt: skip
        along = dx * np.cos(angle) + dy * np.sin(angle) - 0.8 * radius
        across = np.abs(dy * np.cos(angle) - dx * np.sin(angle))
        taper = np.clip(1.0 - along / length, 0.0, 1.0) * (along >= 0)  # a cone: thickness falls linearly
        blurred = np.sqrt(sigma**2 + 1.0 / 12.0)  # the pixel box adds variance 1/12
        peak = np.clip(root_mm / size_mm, 0.05, 0.4) * sigma / blurred
        profile = np.maximum(profile, peak * taper * np.exp(-0.5 * (across / blurred) ** 2))
        half = 1.18 * sigma * taper  # half the full width at half maximum
        cover = np.clip(np.minimum(across + 0.5, half) - np.maximum(across - 0.5, -half), 0.0, None)
        inside |= cover >= 0.5
    return profile, inside


def _pixel_mean(values: np.ndarray, ss: int) -> np.ndarray:
    h, w = values.shape[0] // ss, values.shape[1] // ss
    return values.reshape(h, ss, w, ss).mean(axis=(1, 3))
