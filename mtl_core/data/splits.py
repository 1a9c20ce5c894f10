"""Stratified splits of cases into training, validation and held-out test parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

PARTS = ("train", "val", "test")


def _empty() -> np.ndarray:
    return np.array([], dtype=int)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: splits compare by identity
class Split:
    """One training's cases: row indices of its training, validation (early stopping) and test parts.

    ``repeat`` / ``fold`` number a cross-validation training; the final model of a cross-validated run, trained on
    every case, is ``repeat = fold = -1`` with an empty test part.

    Example:
        >>> split = Split(np.array([0, 2]), np.array([1]), np.array([3]))
        >>> split.to_json(["a", "b", "c", "d"])
        {'train': ['a', 'c'], 'val': ['b'], 'test': ['d'], 'repeat': 0, 'fold': 0}
    """

    train: np.ndarray
    val: np.ndarray = field(default_factory=_empty)
    test: np.ndarray = field(default_factory=_empty)
    repeat: int = 0
    fold: int = 0

    @property
    def is_final(self) -> bool:
        """The final model of a cross-validated run (every case but the validation part is trained on)."""
        return self.fold < 0

    def parts(self) -> dict[str, np.ndarray]:
        """{"train" | "val" | "test": row indices}, in that order."""
        return {name: getattr(self, name) for name in PARTS}

    def to_json(self, ids: list[str]) -> dict[str, Any]:
        """The split with case ids for indices, as ``split.json`` holds it (parts, then repeat and fold)."""
        return {name: [ids[i] for i in rows] for name, rows in self.parts().items()} | {
            "repeat": self.repeat, "fold": self.fold}


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


def _grouped_take(index: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, fraction: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_stratified_take` over whole groups (a group's stratum is its most frequent one)."""
    if groups is None:
        return _stratified_take(index, labels, fraction, rng)
    units, inverse = np.unique(np.asarray(groups)[index].astype(str), return_inverse=True)
    unit_labels = np.array([_majority(labels[index][inverse == u]) for u in range(len(units))])
    _, taken_units = _stratified_take(np.arange(len(units)), unit_labels, fraction, rng)
    taken = np.isin(inverse, taken_units)
    return index[~taken], index[taken]


def holdout_split(n: int, strata: np.ndarray | None, test_fraction: float, val_fraction: float,
                  seed: int, groups: np.ndarray | None = None) -> Split:
    """Train, validation and test indices (repeat and fold 0); each stratum is split in the same proportions.

    Args:
        n: number of cases.
        strata: label per case to stratify on (any dtype), or None for a plain random split.
        test_fraction: part held out for the final metrics.
        val_fraction: part of the remainder used for early stopping (0 for none).
        seed: split seed.
        groups: optional group (patient) per case: a group never straddles two parts.
    """
    if n < 3:
        raise ConfigError(f"a split needs at least 3 cases, the data set has {n}")
    rng = np.random.default_rng(seed)
    labels = (np.zeros(n, dtype=int) if strata is None else np.asarray(strata)).astype(str)
    rest, test = _grouped_take(np.arange(n), labels, groups, test_fraction, rng)
    if val_fraction > 0:
        train, val = _grouped_take(rest, labels, groups, val_fraction, rng)
    else:
        train, val = rest, _empty()
    return Split(train, val, test)


def _deal(units: np.ndarray, unit_strata: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number per unit: within each stratum, shuffled units are dealt round-robin, starting where the last
    stratum stopped so that fold sizes stay balanced."""
    fold_of = np.empty(len(units), dtype=int)
    offset = 0
    for value in np.unique(unit_strata):
        members = np.flatnonzero(unit_strata == value)
        members = members[rng.permutation(len(members))]
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset = (offset + len(members)) % folds
    return fold_of


def kfold_splits(n: int, strata: np.ndarray | None, groups: np.ndarray | None, folds: int, repeats: int,
                 val_fraction: float, seed: int) -> list[Split]:
    """Repeated (group-aware) stratified K-fold: every case is in the test part exactly once per repeat.

    Groups (patients) are kept whole: a group's stratum is its most frequent one. A stratum with fewer units than
    ``folds`` is spread over as many folds as it has units (its other folds have none of it).

    Returns:
        One :class:`Split` per (repeat, fold), its validation part taken from the training part, stratified.
    """
    labels = (np.zeros(n, dtype=int) if strata is None else np.asarray(strata)).astype(str)
    group_ids = np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)
    units, unit_index = np.unique(group_ids, return_inverse=True)
    if folds < 2 or folds > len(units):
        raise ConfigError(f"folds must be between 2 and the number of {'groups' if groups is not None else 'cases'} "
                          f"({len(units)}), got {folds}")
    unit_strata = np.array([_majority(labels[unit_index == u]) for u in range(len(units))])
    out = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        fold_of_case = _deal(units, unit_strata, folds, rng)[unit_index]
        for fold in range(folds):
            test = np.flatnonzero(fold_of_case == fold)
            rest = np.flatnonzero(fold_of_case != fold)
            if val_fraction > 0:
                train, val = _grouped_take(rest, labels, groups, val_fraction, rng)
            else:
                train, val = rest, _empty()
            out.append(Split(train, val, test, repeat, fold))
    return out


def small_strata(strata: np.ndarray | None, folds: int) -> dict[str, int]:
    """Strata with fewer cases than folds (they cannot appear in every test fold)."""
    if strata is None or folds < 2:
        return {}
    values, counts = np.unique(np.asarray(strata).astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True) if c < folds}


def _majority(values: np.ndarray) -> str:
    found, counts = np.unique(values, return_counts=True)
    return str(found[np.argmax(counts)])


def train_val_split(n: int, strata: np.ndarray | None, val_fraction: float, seed: int,
                    groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All cases into training and (stratified, group-aware) validation parts, no test part."""
    labels = (np.zeros(n, dtype=int) if strata is None else np.asarray(strata)).astype(str)
    if val_fraction <= 0:
        return np.arange(n), _empty()
    return _grouped_take(np.arange(n), labels, groups, val_fraction, np.random.default_rng(seed))
