"""Frame, pixel grid and attenuation coefficients shared by the phantom's modules.

Geometry lives in the 2048 x 2048 JSRT frame (0.175 mm pixels, x grows towards the patient's left) and is sampled
at the pixel centres of the output grid, so one case looks the same at 64 and at 2048 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FRAME = 2048
FRAME_MM_PER_PX = 0.175
MU_TISSUE = 0.020  # 1/mm, soft tissue at an effective ~60 keV
MU_LUNG = 0.005  # 1/mm, inflated lung (density ~0.25)
MU_BONE = 0.030  # 1/mm, bone over the soft tissue it replaces


@dataclass(frozen=True)
class Grid:
    """Output pixel grid: ``x`` (columns) and ``y`` (rows) hold the pixel centres in frame coordinates."""

    size: int
    x: np.ndarray
    y: np.ndarray
    step: float  # frame pixels per output pixel
    mm_per_px: float

    def index(self, coord: float) -> float:
        """Frame coordinate -> (fractional) output pixel index."""
        return (coord + 0.5) / self.step - 0.5


@lru_cache(maxsize=8)
def make_grid(size: int) -> Grid:
    """Return the (cached) grid of a ``size x size`` image of the 2048 frame."""
    step = FRAME / size
    centres = (np.arange(size) + 0.5) * step - 0.5
    centres.flags.writeable = False
    return Grid(size, centres, centres, step, FRAME_MM_PER_PX * step)


def span(grid: Grid, low: float, high: float) -> slice:
    """Output rows (or columns) whose centres cover the frame interval ``[low, high]``, clipped to the image."""
    start = max(int(np.floor(grid.index(low))), 0)
    return slice(start, max(min(int(np.ceil(grid.index(high))) + 1, grid.size), start))


def smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
