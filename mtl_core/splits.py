"""Stratified splits of cases into training, validation and held-out test parts."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError


def _stratified_take(index: np.ndarray, strata: np.ndarray, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``index`` into (rest, taken) with ``fraction`` of every stratum taken (rounded, at least one of a
    stratum with two or more cases)."""
    taken = []
    for value in np.unique(strata[index].astype(str)):
        members = index[strata[index].astype(str) == value]
        members = members[rng.permutation(len(members))]
        k = int(round(fraction * len(members)))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        taken.extend(members[:k].tolist())
    taken_arr = np.array(sorted(taken), dtype=int)
    return np.setdiff1d(index, taken_arr), taken_arr


def holdout_split(n: int, strata: np.ndarray | None, test_fraction: float, val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test indices; each stratum is split in the same proportions.

    Args:
        n: number of cases.
        strata: label per case to stratify on (any dtype), or None for a plain random split.
        test_fraction: part held out for the final metrics.
        val_fraction: part of the remainder used for early stopping (0 for none).
        seed: split seed.
    """
    if n < 3:
        raise ConfigError(f"a split needs at least 3 cases, the data set has {n}")
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int) if strata is None else np.asarray(strata)
    everything = np.arange(n)
    rest, test = _stratified_take(everything, labels, test_fraction, rng)
    if val_fraction > 0:
        train, val = _stratified_take(rest, labels, val_fraction, rng)
    else:
        train, val = rest, np.array([], dtype=int)
    return train, val, test
