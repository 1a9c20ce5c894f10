"""Anatomy of the chest phantom, as X-ray attenuation (line integrals of mu, unitless).

Built in the 2048 frame (see :mod:`jsrt_res_mtnet.phantom_grid`); every case draws its own variant:

* **Body**: soft tissue of elliptical cross-section (thickness ``T0 * sqrt(1 - u^2)``) under sloping shoulders;
  breast shadows for women.
* **Lungs**: two star-shaped fields, each a radius-per-angle table built from a template outline of the whole lung,
  warped per case (scale, shift, diaphragm height, low harmonics). Inside, a fraction of the tissue path is
  replaced by inflated lung (``MU_LUNG``), deepest mid-lung. The heart and the diaphragm domes overlap the lungs'
  lower and medial parts and displace most of the air there (``HIDDEN_AIR``), which is where the real posterior
  recesses and retrocardiac lung are. The trachea and a gastric bubble add air.
* **Bones**: posterior ribs continuing as anterior ribs, clavicles (hollow tubes with a bright cortex), the spine.
* **Parenchyma**: vessels and density noise, in :mod:`jsrt_res_mtnet.phantom_texture`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.interpolate import pchip_interpolate

from jsrt_res_mtnet.phantom_grid import MU_BONE, MU_LUNG, MU_TISSUE, Grid, smoothstep, span
from jsrt_res_mtnet.phantom_texture import TRUNK_ANGLES, vessel_tree

N_THETA = 360
# Template outlines (frame pixels), walked around each lung; the right lung is on the image left. They are the
# whole lungs, with the parts behind the heart and the posterior recesses below the dome top (where real nodules
# also occur); the heart and the domes hide most of the air there (HIDDEN_AIR) rather than cutting the lung off.
RIGHT_LUNG = np.array(
    [(560, 165), (690, 180), (800, 250), (865, 390), (895, 600), (910, 800), (925, 1000), (940, 1200),
     (955, 1450), (905, 1570), (790, 1630), (660, 1670), (530, 1720), (410, 1750), (300, 1770), (225, 1775),
     (200, 1560), (185, 1250), (190, 1000), (215, 750), (270, 520), (350, 330), (450, 215)], dtype=float)  # fmt: skip
LEFT_LUNG = np.array(
    [(1480, 165), (1360, 180), (1250, 250), (1185, 390), (1160, 600), (1160, 800), (1150, 1000), (1130, 1250),
     (1150, 1450), (1220, 1600), (1380, 1665), (1560, 1690), (1700, 1710), (1800, 1745), (1850, 1770),
     (1870, 1520), (1870, 1250), (1860, 1000), (1835, 750), (1780, 520), (1700, 330), (1590, 215)],
    dtype=float)  # fmt: skip
# Visible diaphragm domes (x ascending): the lungs below them are mostly hidden.
DOMES = (
    np.array([(150, 1720), (230, 1660), (300, 1575), (400, 1495), (520, 1435), (640, 1400), (760, 1400),
              (880, 1440), (1000, 1500)], dtype=float),
    np.array([(1300, 1560), (1480, 1505), (1600, 1480), (1720, 1510), (1800, 1585), (1850, 1665),
              (1920, 1730)], dtype=float),
)  # fmt: skip
# Cardiac silhouette: its right and left borders, x at the listed heights y (rows: y, x_right, x_left).
HEART = np.array([(900, 1000, 1180), (1000, 930, 1260), (1150, 890, 1370), (1300, 870, 1440), (1430, 880, 1480),
                  (1540, 920, 1470), (1700, 950, 1450)], dtype=float)  # fmt: skip


def _densify(points: np.ndarray, along: int, n: int = 48) -> np.ndarray:
    """Resample control points (sorted by column ``along``) on ``n`` steps of a smooth monotone (PCHIP) curve."""
    t = np.linspace(points[0, along], points[-1, along], n)
    return np.column_stack([t if k == along else pchip_interpolate(points[:, along], points[:, k], t)
                            for k in range(points.shape[1])])  # fmt: skip


DOMES = tuple(_densify(dome, along=0) for dome in DOMES)
HEART = _densify(HEART, along=0)
HIDDEN_AIR = 0.7  # share of the lung's air path that the heart or the liver/spleen displace behind them
LUNG_CENTRES = np.array([(590.0, 950.0), (1520.0, 950.0)])
HILA = np.array([(860.0, 880.0), (1200.0, 860.0)])
_THETA = np.linspace(-np.pi, np.pi, N_THETA, endpoint=False)


@dataclass(frozen=True)
class Lung:
    """A star-shaped lung field: boundary radius (frame px) at ``N_THETA`` angles around ``(cx, cy)``."""

    cx: float
    cy: float
    radius: np.ndarray

    def boundary(self, theta: np.ndarray) -> np.ndarray:
        """Boundary radius at the angles ``theta`` (radians)."""
        return np.interp(theta, _THETA, self.radius, period=2 * np.pi)

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Whether ``(x, y)`` lies inside, at least ``margin`` frame pixels from the boundary along the ray."""
        r, theta = np.hypot(x - self.cx, y - self.cy), np.arctan2(y - self.cy, x - self.cx)
        return bool(r + margin <= self.boundary(np.array(theta)))

    def including(self, x: float, y: float, margin: float) -> Lung:
        """Return this lung bulged outwards (smoothly, locally) so that it contains ``(x, y)`` with ``margin``."""
        r, theta = np.hypot(x - self.cx, y - self.cy), np.arctan2(y - self.cy, x - self.cx)
        missing = r + margin - float(self.boundary(np.array(theta)))
        if missing <= 0:
            return self
        width = max((margin + 120.0) / max(r, 1.0), 0.15)  # radians
        delta = np.angle(np.exp(1j * (_THETA - theta)))
        return replace(self, radius=self.radius + 1.02 * missing * np.exp(-0.5 * (delta / width) ** 2))


@dataclass(frozen=True)
class Chest:
    """Per-case anatomy parameters (frame pixels unless named otherwise)."""

    lungs: tuple[Lung, Lung]
    cx: float  # body midline
    thickness_mm: float  # antero-posterior body thickness mid-chest
    half_width: float  # half-width of the chest
    air_fraction: float  # part of the tissue path that the lungs replace, mid-lung
    rib_top: float
    rib_spacing: float
    rib_jitter: np.ndarray  # (2, 10)
    rib_width: float  # lateral extent of the ribs from the midline
    clavicle_y: float
    domes: tuple[np.ndarray, np.ndarray]  # visible diaphragm, (n, 2) x ascending, per side
    heart: np.ndarray  # (n, 3): y, right border x, left border x
    breast: np.ndarray  # (thickness mm, y centre, half-height)
    bubble: np.ndarray  # (air mm, x, y)
    vessels: np.ndarray  # (n, 6): x0, y0, x1, y1, diameter mm, generation


def sample_chest(rng: np.random.Generator) -> Chest:
    """Draw the anatomy of one case; the number and order of draws never depend on the row."""
    scale = rng.normal(1.0, [0.03, 0.04])
    shift = rng.normal(0.0, [15.0, 25.0])
    anchor = np.array([1024.0, 200.0])  # scale about the apices, so the lungs grow downwards

    def place(points):
        return (points - anchor) * scale + anchor + shift

    lowering = rng.normal(0.0, 45.0, 2)  # diaphragm height, per side
    lungs = tuple(_sample_lung(place(outline), place(centre), drop, rng) for outline, centre, drop in
                  zip((RIGHT_LUNG, LEFT_LUNG), LUNG_CENTRES, lowering, strict=True))  # fmt: skip
    domes = tuple(place(dome) + [0.0, drop] for dome, drop in zip(DOMES, lowering, strict=True))
    heart_size = rng.normal(1.0, 0.06)  # widens the silhouette about the midline
    heart = np.column_stack([HEART[:, 0], (HEART[:, 1:] - 1024.0) * heart_size + 1024.0])
    heart = np.column_stack([place(heart[:, [1, 0]])[:, ::-1], place(heart[:, [2, 0]])[:, 0]])
    hila = place(HILA) + rng.normal(0.0, 20.0, (2, 2))
    vessels = np.concatenate([vessel_tree(hilum, angles, rng) for hilum, angles in
                              zip(hila, (TRUNK_ANGLES, 180.0 - TRUNK_ANGLES), strict=True)])  # fmt: skip
    return Chest(
        lungs=lungs,  # type: ignore[arg-type]
        cx=1024.0 + shift[0],
        thickness_mm=rng.normal(225.0, 12.0),
        half_width=rng.normal(960.0, 25.0) * scale[0],
        air_fraction=rng.uniform(0.55, 0.68),
        rib_top=170.0 + shift[1] + rng.normal(0.0, 15.0),
        rib_spacing=rng.normal(128.0, 6.0) * scale[1],
        rib_jitter=rng.normal(0.0, 8.0, (2, 10)),
        rib_width=860.0 * scale[0],
        clavicle_y=rng.normal(380.0, 30.0) + shift[1],
        domes=domes,  # type: ignore[arg-type]
        heart=heart,
        breast=np.array([rng.uniform(10.0, 35.0), rng.normal(1330.0, 50.0), rng.uniform(220.0, 300.0)]),
        bubble=np.array(
            [rng.uniform(0.0, 60.0) * (rng.uniform() < 0.6), rng.normal(1420.0, 40.0), rng.normal(1640.0, 40.0)]
        ),
        vessels=vessels,
    )


def _sample_lung(points: np.ndarray, centre: np.ndarray, drop: float, rng: np.random.Generator) -> Lung:
    """Star-shaped lung from its placed outline; the outline's lower part moves down by ``drop``."""
    points = points + np.clip((points[:, 1:] - 1150.0) / 300.0, 0.0, 1.0) * [0.0, drop]
    cx, cy = centre
    theta = np.arctan2(points[:, 1] - cy, points[:, 0] - cx)
    order = np.argsort(theta)
    radius = np.interp(_THETA, theta[order], np.hypot(*(points - [cx, cy]).T)[order], period=2 * np.pi)
    k = np.arange(2, 6)[:, None]
    harmonics = rng.normal(0.0, 0.025, (4, 1)) / (k - 1) * np.cos(k * _THETA + rng.uniform(0, 2 * np.pi, (4, 1)))
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)  # ~2 degrees: rounds the outline's corners
    radius = np.convolve(np.concatenate([radius[-6:], radius, radius[:6]]), kernel / kernel.sum(), mode="valid")
    return Lung(float(cx), float(cy), radius * (1.0 + harmonics.sum(axis=0)))


def lung_fields(chest: Chest, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Return the lung mask and the relative air path: 1 mid-lung, falling to 0 at the boundary, and reduced by
    ``HIDDEN_AIR`` behind the heart and below the domes.
    """
    depth = np.zeros((grid.size, grid.size), np.float32)
    for lung in chest.lungs:
        reach = float(lung.radius.max())
        rows = span(grid, lung.cy - reach, lung.cy + reach)
        cols = span(grid, lung.cx - reach, lung.cx + reach)
        dy, dx = grid.y[rows, None] - lung.cy, grid.x[None, cols] - lung.cx
        rho = np.hypot(dx, dy) / lung.boundary(np.arctan2(dy, dx))
        inside = np.sqrt(np.clip(1.0 - rho**3, 0.0, 1.0))
        depth[rows, cols] = np.maximum(depth[rows, cols], inside)
    return depth > 0, depth * (1.0 - HIDDEN_AIR * _hidden(chest, grid))


def _hidden(chest: Chest, grid: Grid) -> np.ndarray:
    """1 where the heart or the abdomen below a dome overlaps the lungs, 0 elsewhere (edges ~15 frame px)."""
    y, x = grid.y[:, None], grid.x[None, :]
    heights, right, left = chest.heart.T
    right, left = (np.interp(grid.y, heights, border)[:, None] for border in (right, left))
    top = smoothstep((y - heights[0]) / 150.0)
    heart = smoothstep((x - right) / 30.0 + 0.5) * smoothstep((left - x) / 30.0 + 0.5) * top
    dome = np.where(x < chest.cx, *(np.interp(grid.x, d[:, 0], d[:, 1])[None, :] for d in chest.domes))
    return np.maximum(heart, smoothstep((y - dome) / 30.0 + 0.5)).astype(np.float32)


def soft_tissue(chest: Chest, grid: Grid, depth: np.ndarray, female: bool) -> np.ndarray:
    """Attenuation of the body, lungs, trachea and gastric bubble (no bones, no parenchyma)."""
    y, x = grid.y[:, None], grid.x[None, :]
    u = (x - chest.cx) / chest.half_width
    shoulder_line = -60.0 + 260.0 * u**4  # air above the sloping shoulders, at the top corners
    body = chest.thickness_mm * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0)) * smoothstep((y - shoulder_line) / 120.0)
    if female:
        thickness, centre, half_height = chest.breast
        ring = ((np.abs(x - chest.cx) - 680.0) / 330.0) ** 2 + ((y - centre) / half_height) ** 2
        fade = smoothstep((y - centre + half_height) / half_height)  # sharp lower margin, fading upwards
        body = body + thickness * np.sqrt(np.clip(1.0 - ring, 0.0, 1.0)) * fade
    apex_to_base = 0.7 + 0.3 * smoothstep((y - 200.0) / 1100.0)
    air = chest.air_fraction * body * depth * apex_to_base
    trachea = 17.0 * np.sqrt(np.clip(1.0 - ((x - chest.cx - 15.0) / 80.0) ** 2, 0, 1)) * smoothstep((820.0 - y) / 80)
    air_mm, bx, by = chest.bubble  # the gastric bubble, under the left dome
    bubble = air_mm * np.sqrt(np.clip(1.0 - ((x - bx) / 140.0) ** 2 - ((y - by) / 90.0) ** 2, 0.0, 1.0))
    outside_lungs = depth == 0
    atten = MU_TISSUE * (body - trachea * outside_lungs - bubble) - (MU_TISSUE - MU_LUNG) * air
    return atten.astype(np.float32)


def _tube(distance: np.ndarray, half: float, hollow: float) -> np.ndarray:
    """Projected thickness profile across a bone of half-width ``half``; ``hollow`` is the marrow share."""
    q = (distance * distance) * np.float32(1.0 / half**2)
    return np.sqrt(np.maximum(1.0 - q, 0.0)) - hollow * np.sqrt(np.maximum(1.0 - q / 0.49, 0.0))


def _add_bands(out: np.ndarray, grid: Grid, x_range, centre, slope, half: float, peak: float, hollow: float) -> None:
    """Add a family of curved bone bands that share ``x_range``; ``centre(x)``/``slope(x)`` give their mid-line y
    and dy/dx as ``(K, len(x))`` arrays. Each band only touches the rows it spans. On coarse grids each pixel
    averages several sub-rows, so the thin cortices do not alias into moire.
    """
    cols = span(grid, *x_range)
    x = grid.x[cols]
    if x.size == 0:
        return
    yc, tilt = centre(x), np.sqrt(1.0 + slope(x) ** 2)
    fade = (peak * MU_BONE) * smoothstep((x - x_range[0]) / 60.0) * smoothstep((x_range[1] - x) / 60.0)
    reach = half * tilt.max(axis=1) + grid.step
    sub = int(np.clip(np.ceil(grid.step / 6.0), 1, 8))
    offsets = ((np.arange(sub) + 0.5) / sub - 0.5) * grid.step
    for k in range(len(yc)):
        rows = span(grid, float(yc[k].min() - reach[k]), float(yc[k].max() + reach[k]))
        y = grid.y[rows, None] + offsets[None, :]  # (rows, sub)
        distance = (y[:, :, None] - yc[k]) / tilt[k]  # (rows, sub, cols)
        out[rows, cols] += _tube(distance, half, hollow).mean(axis=1) * fade


def bones(chest: Chest, grid: Grid) -> np.ndarray:
    """Attenuation added by ribs, clavicles and the spine."""
    out = np.zeros((grid.size, grid.size), np.float32)
    k = np.arange(10)
    curve = np.stack([260.0 - 12.0 * k, 700.0 - 45.0 * k], axis=1)  # (a, b): upper ribs are more arched
    for index, side in enumerate((-1.0, 1.0)):
        y0 = chest.rib_top + k * chest.rib_spacing + chest.rib_jitter[index]
        _ribs(out, grid, chest.cx, side, chest.rib_width, y0, curve)
        _clavicle(out, grid, chest.cx, side, chest.clavicle_y)
    dx = (grid.x - chest.cx) / 95.0
    column = np.sqrt(np.clip(1.0 - dx**2, 0.0, 1.0)) * 9.0 * MU_BONE
    discs = 0.9 + 0.1 * np.cos(2 * np.pi * (grid.y - chest.rib_top) / chest.rib_spacing)
    out += (discs[:, None] * column[None, :]).astype(np.float32)
    return out


def _ribs(out, grid, cx, side, width, y0, curve) -> None:
    """Posterior ribs (spine to lateral wall, sagging), continuing as anterior ribs (running down medially).

    ``y0`` (K,) is each rib's height at the spine; ``curve`` (K, 2) its rise ``a`` and sag ``b`` over the half-width.
    """
    a, b = curve[:, :1], curve[:, 1:]
    lateral = y0[:, None] - a * 1.04 + b * 1.04**2

    def posterior(x):
        u = side * (x - cx) / width
        return y0[:, None] - a * u + b * u * u

    def anterior(x):
        v = 1.04 - side * (x - cx) / width
        return lateral + 300.0 * v + 60.0 * v * v

    def posterior_slope(x):
        return (2.0 * b * side * (x - cx) / width - a) * side / width

    def anterior_slope(x):
        return -(300.0 + 120.0 * (1.04 - side * (x - cx) / width)) * side / width + 0.0 * lateral

    span = sorted((cx + side * 0.1 * width, cx + side * 1.06 * width))
    _add_bands(out, grid, span, posterior, posterior_slope, half=30.0, peak=9.0, hollow=0.6)
    span = sorted((cx + side * 0.32 * width, cx + side * 1.04 * width))
    _add_bands(out, grid, span, anterior, anterior_slope, half=36.0, peak=4.5, hollow=0.5)


def _clavicle(out, grid, cx, side, y_medial) -> None:
    def centre(x):
        d = side * (x - cx) - 110.0
        return (y_medial - 0.2 * d + 30.0 * np.sin(np.pi * d / 610.0))[None, :]

    def slope(x):
        d = side * (x - cx) - 110.0
        return (side * (-0.2 + 30.0 * np.pi / 610.0 * np.cos(np.pi * d / 610.0)))[None, :]

    span = sorted((cx + side * 110.0, cx + side * 740.0))
    _add_bands(out, grid, span, centre, slope, half=42.0, peak=13.0, hollow=0.4)
