"""What every figure of a report is drawn on: a bare matplotlib figure, wrapped titles, and the images behind the
cases (for figures drawn on them)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110

@dataclass(frozen=True)
class CaseImages:
    """The images behind a run's cases, for figures drawn on them (a point task's ``points``).

    Attributes:
        paths: case id -> image file.
        reader: reads one file as a float (H, W) array in [0, 1] (the plugin's ``read_image``).
        strata: stratum name -> case id -> value (``Records.strata``), to spread the cases shown over.
    """

    paths: dict[str, Path]
    reader: Callable[[Path], np.ndarray]
    strata: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Any, reader: Callable[[Path], np.ndarray]) -> CaseImages:
        """From a plugin's :class:`~mtl_core.data.records.Records` and its image reader."""
        ids = [str(i) for i in records.ids]
        strata = {name: {i: "" if v is None else str(v) for i, v in zip(ids, values, strict=True)}
                  for name, values in records.strata.items()}
        return cls(dict(zip(ids, records.paths, strict=True)), reader, strata)


def figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on an Agg canvas, not pyplot: no display, no global figure registry to close, and the
    # backend of a user's notebook is left alone (matplotlib.use("Agg") would switch it for the whole process).
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@contextmanager
def plain_text() -> Iterator[None]:
    """Figures made and saved inside show every text as written: no mathtext. A class name, unit or case id with
    two ``$`` would otherwise be parsed as TeX and crash the drawing ("$5 - $10" is not valid mathtext)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text


def class_label(value: Any) -> str:
    """A class name as written in predictions.csv (pandas may have read "1" as 1.0); an empty cell is ""."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if pd.isna(value) else str(value)
