"""The ``points`` figure of a point task: predicted against true points, drawn on a few test images.

The cases shown are chosen from the predictions alone, so the same predictions give the same figure: up to four
found (a hit, as the task's ``hit_rate`` counts it) and four missed, each group spread over the values of a stratum
(the one with the most values among the cases with a point, such as a nodule's subtlety levels) and, within a
value, over the range of distances (the median case first). Each panel is a square window around the true and the
predicted point, in the task's frame units, with the true extent as a solid circle, the predicted extent dashed,
and the hit zone dotted.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import MTLError
from ..tasks import task_from_schema
from .canvas import CaseImages, figure, wrap

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


PER_GROUP = 4  # cases found and cases missed shown (fewer of one group: more of the other)
TRUE_COLOUR, PRED_COLOUR = "#00c8ff", "#ff8c1a"  # cyan and orange: apart on grey levels and for colour-blind eyes


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)


def _spread_order(n: int) -> list[int]:
    """Ranks 0..n-1 in the order median, quartiles, octiles...: any first k of them spread over the range."""
    order: list[int] = []
    denominator = 2
    while len(order) < n and denominator <= 4 * n:
        for numerator in range(1, denominator, 2):
            rank = round(numerator / denominator * (n - 1))
            if rank not in order:
                order.append(rank)
        denominator *= 2
    return order + [r for r in range(n) if r not in order]


def _spread(members: np.ndarray, k: int, distance: np.ndarray, labels: list[str], ids: list[str],
            start: int) -> list[int]:
    """``k`` of ``members`` taken in turn from each stratum value (from the ``start``-th on), each value's cases
    in :func:`_spread_order` of their distance; returned by value, then distance."""
    buckets: dict[str, list[int]] = {}
    for i in members:
        buckets.setdefault(labels[i], []).append(int(i))
    values = sorted(buckets)
    queues = []
    for value in values:
        ranked = sorted(buckets[value], key=lambda i: (distance[i], ids[i]))
        queues.append([ranked[r] for r in _spread_order(len(ranked))])
    picked: list[int] = []
    turn = start % max(1, len(values))
    while len(picked) < k:
        queue = queues[turn % len(values)]
        if queue:
            picked.append(queue.pop(0))
        turn += 1
    return sorted(picked, key=lambda i: (values.index(labels[i]), distance[i], ids[i]))


def choose_cases(distance: np.ndarray, hit: np.ndarray, labels: list[str], ids: list[str],
                 per_group: int = PER_GROUP) -> list[int]:
    """Indices of the cases to show: found ones, then missed ones (see the module docstring)."""
    found, missed = np.flatnonzero(hit), np.flatnonzero(~hit)
    k_found = min(len(found), max(per_group, 2 * per_group - len(missed)))
    k_missed = min(len(missed), 2 * per_group - k_found)
    first = _spread(found, k_found, distance, labels, ids, 0)
    return first + _spread(missed, k_missed, distance, labels, ids, len(first))


def _stratum(images: CaseImages | None, ids: list[str]) -> tuple[str, list[str]]:
    """The stratum with the most distinct values among ``ids`` (the first declared on a tie) and each id's value."""
    best, labels = "", [""] * len(ids)
    for name, values in (images.strata if images is not None else {}).items():
        found = [str(values.get(i, "") or "") for i in ids]
        if len(set(found) - {""}) > len(set(labels) - {""}):
            best, labels = name, found
    return best, labels


def _window(true: np.ndarray, pred: np.ndarray, radius: float, frame: tuple[float, float]) -> tuple[float, ...]:
    """A square (x0, x1, y0, y1) in frame units holding both points with a margin, at least a quarter of the
    frame wide, inside the frame."""
    half = max(0.5 * float(np.max(np.abs(pred - true))) + max(1.5 * radius, 0.03 * max(frame)), 0.125 * max(frame))
    centre = (true + pred) / 2
    bounds = []
    for axis in (0, 1):
        side = min(2 * half, frame[axis])
        low = min(max(centre[axis] - side / 2, 0.0), frame[axis] - side)
        bounds += [low, low + side]
    return tuple(bounds)


def _draw_image(ax: Axes, image: np.ndarray | None, window: tuple[float, ...], frame: tuple[float, float]) -> None:
    """The part of ``image`` under ``window`` (frame units), grey levels stretched to its 1st-99th percentile."""
    x0, x1, y0, y1 = window
    if image is None:
        ax.set_facecolor("0.82")
    else:
        sx, sy = image.shape[1] / frame[0], image.shape[0] / frame[1]  # pixels per frame unit
        c0, c1 = int(math.floor(x0 * sx)), min(image.shape[1], int(math.ceil(x1 * sx)))
        r0, r1 = int(math.floor(y0 * sy)), min(image.shape[0], int(math.ceil(y1 * sy)))
        crop = image[r0:r1, c0:c1]
        lo, hi = np.percentile(crop, [1, 99]) if crop.size else (0.0, 1.0)
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1e-3,
                  extent=(c0 / sx, c1 / sx, r1 / sy, r0 / sy), interpolation="antialiased")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)  # y grows downwards, as in the image
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_marks(ax: Axes, true: np.ndarray, pred: np.ndarray, radii: tuple[float, float, float]) -> None:
    """True point with its extent (solid) and hit zone (dotted), predicted point with its extent (dashed)."""
    from matplotlib.patches import Circle

    true_r, pred_r, hit_r = radii
    ax.plot([true[0], pred[0]], [true[1], pred[1]], color="white", linewidth=0.8, linestyle=":")
    for centre, radius, colour, style, width in ((true, hit_r, TRUE_COLOUR, ":", 1.0),
                                                 (true, true_r, TRUE_COLOUR, "-", 1.3),
                                                 (pred, pred_r, PRED_COLOUR, "--", 1.3)):
        if radius > 0:
            ax.add_patch(Circle(tuple(centre), radius, fill=False, edgecolor=colour, linestyle=style,
                                linewidth=width))
    ax.plot(*true, marker="+", markersize=7, markeredgewidth=1.5, color=TRUE_COLOUR)
    ax.plot(*pred, marker="x", markersize=8, markeredgewidth=2, color=PRED_COLOUR)


def _read(images: CaseImages | None, case_id: str) -> np.ndarray | None:
    """The image of a case, or None when there is none to read (the panel then shows a grey frame)."""
    path = None if images is None else images.paths.get(case_id)
    if path is None:
        return None
    try:
        return np.asarray(images.reader(path), dtype=np.float32)
    except (MTLError, OSError):
        return None


def _legend(fig: Figure, extent: str | None, scale: float | None, unit: str, radius: float | None) -> None:
    from matplotlib.lines import Line2D

    sized = extent is not None and bool(scale)
    hit = (f"hit zone: within one true {extent} of the truth" if sized else
           f"hit zone: within {radius:.4g} {unit}" if radius is not None else "hit zone")
    handles = [Line2D([], [], color=TRUE_COLOUR, marker="+", markersize=9, markeredgewidth=2,
                      label=f"true point, circle: true {extent}" if sized else "true point"),
               Line2D([], [], color=PRED_COLOUR, marker="x", linestyle="--", markeredgewidth=2,
                      label=f"predicted point, dashed: predicted {extent}" if sized else "predicted point"),
               Line2D([], [], color=TRUE_COLOUR, linestyle=":", label=hit)]
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if not sized else 2, fontsize=8.5,
               facecolor="0.95")


def render_points(task: dict[str, Any], predictions: pd.DataFrame, note: str = "",
                  images: CaseImages | None = None) -> Figure:
    """Predicted and true points of a point task on up to eight test cases, drawn on their images (a grey frame
    where ``images`` has none), with the distance and the hit or miss in each panel's title."""
    point = task_from_schema(task)
    frame = (float(task["frame"][0]), float(task["frame"][1]))
    extent, scale, unit = task.get("extent"), task.get("extent_scale"), task.get("unit") or ""
    names = [*task["axes"]] + ([extent] if extent else [])
    truth = np.stack([_column(predictions, f"{n}_true") for n in names], axis=1)
    pred = np.stack([_column(predictions, f"{n}_pred") for n in names], axis=1)
    keep = point.labelled(truth) & np.isfinite(pred[:, :2]).all(axis=1)
    truth, pred = truth[keep], pred[keep]
    ids = predictions["id"].astype(str).to_numpy()[keep].tolist()
    distance = np.hypot(*(pred[:, :2] - truth[:, :2]).T)
    hit_radius = np.broadcast_to(point._hit_radius(truth), len(truth))  # the radius its hit_rate metric uses
    hit = distance <= hit_radius
    stratum, labels = _stratum(images, ids)
    shown = choose_cases(distance, hit, labels, ids)
    cols = max(1, min(4, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = figure(2.65 * cols + 0.3, 2.75 * rows + 1.3)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, i in zip(axes, shown, strict=False):
        sized = extent is not None and bool(scale) and np.isfinite(truth[i, 2])
        radii = (truth[i, 2] * scale / 2 if sized else 0.0,
                 pred[i, 2] * scale / 2 if sized and np.isfinite(pred[i, 2]) else 0.0, float(hit_radius[i]))
        _draw_image(ax, _read(images, ids[i]), _window(truth[i, :2], pred[i, :2], radii[2], frame), frame)
        _draw_marks(ax, truth[i, :2], pred[i, :2], radii)
        where = f"{labels[i]}, " if labels[i] else ""
        ax.set_title(f"{wrap(ids[i], 30)}\n{where}{distance[i]:.0f} {unit}: {'hit' if hit[i] else 'miss'}",
                     fontsize=9)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    if not shown:
        axes[0].set_visible(True)
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no test case with a point", ha="center", va="center")
    spread = f", spread over {stratum}" if stratum else ""
    lines = [f"{task['name']}: predicted and true points on {len(shown)} of {len(ids)} test cases with a point",
             f"{int(hit.sum())} found, {int((~hit).sum())} missed{spread}", note]
    fig.suptitle("\n".join(wrap(line, 22 * cols) for line in lines if line), fontsize=11)
    _legend(fig, extent, scale, unit, float(hit_radius[0]) if len(hit_radius) else None)
    return fig
