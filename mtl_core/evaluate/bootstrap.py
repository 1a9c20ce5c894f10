"""Bootstrap 95 % intervals of a held-out part's metrics (when a run has no cross-validation to give intervals)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: resamples of the held-out cases and the seed of their draw: intervals are reproducible
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_ci95(score: Callable[[np.ndarray], dict[str, float]], n: int, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, list[float]]:
    """Percentile 95 % intervals [2.5 %, 97.5 %] of every metric ``score(rows)`` returns, over ``resamples``
    draws of ``n`` row indices with replacement (seeded). A resample where a metric is undefined (NaN: one class
    only drawn) is left out of that metric's interval; [NaN, NaN] when every resample is. Empty when ``n`` is 0.

    Example:
        >>> truth = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
        >>> ci = bootstrap_ci95(lambda rows: {"mean": float(truth[rows].mean())}, len(truth))
        >>> 0.0 <= ci["mean"][0] <= 0.6 <= ci["mean"][1] <= 1.0
        True
    """
    if n == 0 or resamples < 1:
        return {}
    rng = np.random.default_rng(seed)
    draws = [score(rng.integers(0, n, n)) for _ in range(resamples)]
    out = {}
    for key in draws[0]:
        values = np.array([d.get(key, np.nan) for d in draws], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[key] = [float(v) for v in np.percentile(values, [2.5, 97.5])] if len(values) else [np.nan, np.nan]
    return out


__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "bootstrap_ci95"]
