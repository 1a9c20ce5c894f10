"""Tests for mtl_core.data.splits: stratified hold-out and K-fold splits, group awareness, seeds and errors.

The split type is being moved from a dict to a dataclass; :func:`_part` reads a part from either, so these tests
check what a user relies on (who lands where) whatever the container."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mtl_core.data import holdout_split, kfold_splits, small_strata, train_val_split
from mtl_core.errors import ConfigError

PARTS = ("train", "val", "test")


def _part(split, name: str):
    """A part (or ``repeat`` / ``fold``) of a split, whether the split is a dict, a tuple or a dataclass."""
    if isinstance(split, tuple):
        return split[PARTS.index(name)]
    return split[name] if isinstance(split, dict) else getattr(split, name)


def _strata(counts: dict[str, int]) -> np.ndarray:
    """Labels with ``counts`` cases per stratum, interleaved so that a stratum is never one contiguous block."""
    labels = np.concatenate([np.full(c, s) for s, c in counts.items()])
    return labels[np.random.default_rng(123).permutation(len(labels))]


def _assert_partition(split, n: int) -> None:
    parts = [np.asarray(_part(split, p)) for p in PARTS]
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == n, "the parts overlap or miss cases"
    assert sorted(joined.tolist()) == list(range(n))


# ---- hold-out ------------------------------------------------------------------------------------------------


def test_holdout_takes_the_same_share_of_every_stratum():
    strata = _strata({"a": 60, "b": 30, "c": 10})
    split = holdout_split(100, strata, test_fraction=0.2, val_fraction=0.25, seed=0)
    _assert_partition(split, 100)
    # by hand: test takes round(0.2 * count) of each stratum, validation round(0.25 * what is left)
    assert Counter(strata[_part(split, "test")].tolist()) == {"a": 12, "b": 6, "c": 2}
    assert Counter(strata[_part(split, "val")].tolist()) == {"a": 12, "b": 6, "c": 2}
    assert Counter(strata[_part(split, "train")].tolist()) == {"a": 36, "b": 18, "c": 6}


def test_holdout_without_strata_and_without_validation():
    split = holdout_split(50, None, test_fraction=0.3, val_fraction=0.0, seed=1)
    _assert_partition(split, 50)
    assert len(_part(split, "test")) == 15 and len(_part(split, "val")) == 0 and len(_part(split, "train")) == 35


def test_holdout_is_determined_by_its_seed():
    strata = _strata({"a": 40, "b": 20})
    first, again = holdout_split(60, strata, 0.25, 0.2, seed=7), holdout_split(60, strata, 0.25, 0.2, seed=7)
    other = holdout_split(60, strata, 0.25, 0.2, seed=8)
    for name in PARTS:
        np.testing.assert_array_equal(_part(first, name), _part(again, name))
    assert not np.array_equal(_part(first, "test"), _part(other, "test"))  # the seed matters


def test_a_small_stratum_gives_one_case_but_never_all_its_cases():
    # at 10 %: two or three cases give round(0.2) = round(0.3) = 0, raised to one; a single case gives 0 and
    # stays in training. At 90 %: round(1.8) = 2 of two and round(2.7) = 3 of three are lowered so that training
    # keeps one of each; a single case is rounded like any other (round(0.9) = 1).
    strata = np.array(["big"] * 20 + ["pair"] * 2 + ["single"] + ["trio"] * 3)
    small = holdout_split(len(strata), strata, test_fraction=0.1, val_fraction=0.0, seed=0)
    assert Counter(strata[_part(small, "test")].tolist()) == {"big": 2, "pair": 1, "trio": 1}
    large = holdout_split(len(strata), strata, test_fraction=0.9, val_fraction=0.0, seed=0)
    assert Counter(strata[_part(large, "test")].tolist()) == {"big": 18, "pair": 1, "trio": 2, "single": 1}
    assert Counter(strata[_part(large, "train")].tolist()) == {"big": 2, "pair": 1, "trio": 1}


def test_holdout_keeps_every_group_in_one_part():
    groups = np.repeat([f"patient{i}" for i in range(30)], 3)  # three images per patient
    strata = np.repeat(np.arange(30) % 2, 3)
    split = holdout_split(90, strata, test_fraction=0.2, val_fraction=0.2, seed=3, groups=groups)
    _assert_partition(split, 90)
    owners = [set(groups[_part(split, name)].tolist()) for name in PARTS]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert len(owners[2]) == 6  # 20 % of the 30 patients, 3 of each stratum


def test_holdout_needs_three_cases():
    with pytest.raises(ConfigError, match="at least 3 cases, the data set has 2"):
        holdout_split(2, None, 0.2, 0.1, seed=0)


def test_train_val_split_keeps_every_case_and_stratifies():
    strata = _strata({"a": 30, "b": 10})
    train, val = train_val_split(40, strata, val_fraction=0.2, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))
    assert Counter(strata[val].tolist()) == {"a": 6, "b": 2}
    train, val = train_val_split(40, strata, val_fraction=0.0, seed=0)
    assert train.tolist() == list(range(40)) and len(val) == 0


# ---- K-fold --------------------------------------------------------------------------------------------------


def test_every_case_is_held_out_exactly_once_per_repeat():
    strata = _strata({"a": 23, "b": 11, "c": 7})
    splits = kfold_splits(41, strata, None, folds=4, repeats=2, val_fraction=0.2, seed=0)
    assert [(_part(s, "repeat"), _part(s, "fold")) for s in splits] == [(r, f) for r in range(2) for f in range(4)]
    for repeat in range(2):
        tests = [_part(s, "test") for s in splits if _part(s, "repeat") == repeat]
        assert sorted(np.concatenate(tests).tolist()) == list(range(41))
    for split in splits:
        _assert_partition(split, 41)
        assert len(_part(split, "val")) > 0


def test_folds_are_balanced_overall_and_within_each_stratum():
    strata = _strata({"a": 23, "b": 11, "c": 7})
    splits = kfold_splits(41, strata, None, folds=4, repeats=1, val_fraction=0.0, seed=5)
    sizes = [len(_part(s, "test")) for s in splits]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 41
    for value in "abc":
        per_fold = [int(np.sum(strata[_part(s, "test")] == value)) for s in splits]
        assert max(per_fold) - min(per_fold) <= 1, (value, per_fold)


def test_repeats_reshuffle_and_the_seed_reproduces():
    strata = _strata({"a": 30, "b": 10})
    first = kfold_splits(40, strata, None, folds=5, repeats=2, val_fraction=0.0, seed=11)
    again = kfold_splits(40, strata, None, folds=5, repeats=2, val_fraction=0.0, seed=11)
    other = kfold_splits(40, strata, None, folds=5, repeats=2, val_fraction=0.0, seed=12)
    assert all(np.array_equal(_part(a, "test"), _part(b, "test")) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(_part(first[0], "test"), _part(first[5], "test"))  # repeat 1 is another deal
    assert not all(np.array_equal(_part(a, "test"), _part(b, "test")) for a, b in zip(first, other, strict=True))


def test_kfold_keeps_groups_whole():
    groups = np.repeat([f"p{i}" for i in range(12)], [1, 2, 3] * 4)  # 24 images of 12 patients
    strata = np.repeat(np.arange(12) % 2, [1, 2, 3] * 4)
    splits = kfold_splits(24, strata, groups, folds=3, repeats=1, val_fraction=0.25, seed=0)
    for split in splits:
        _assert_partition(split, 24)
        owners = [set(groups[_part(split, name)].tolist()) for name in PARTS]
        assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert sorted(p for s in splits for p in set(groups[_part(s, "test")].tolist())) == sorted(set(groups.tolist()))


def test_a_stratum_smaller_than_the_folds_is_spread_over_distinct_folds():
    strata = np.array(["common"] * 20 + ["rare"] * 2)
    splits = kfold_splits(22, strata, None, folds=5, repeats=1, val_fraction=0.0, seed=0)
    holding = [i for i, s in enumerate(splits) if "rare" in strata[_part(s, "test")].tolist()]
    assert len(holding) == 2  # one rare case in each of two folds, none in the other three
    assert small_strata(strata, 5) == {"rare": 2}


@pytest.mark.parametrize(("folds", "groups", "message"), [
    (1, None, r"folds must be between 2 and the number of cases \(10\), got 1"),
    (11, None, r"folds must be between 2 and the number of cases \(10\), got 11"),
    (5, np.repeat(["a", "b", "c", "d", "e"], 2)[:10], None),
    (6, np.repeat(["a", "b", "c", "d", "e"], 2)[:10], r"number of groups \(5\), got 6"),
])
def test_impossible_fold_counts_are_config_errors(folds, groups, message):
    if message is None:  # as many folds as groups is allowed: leave-one-group-out
        assert len(kfold_splits(10, None, groups, folds, 1, 0.0, seed=0)) == folds
        return
    with pytest.raises(ConfigError, match=message):
        kfold_splits(10, None, groups, folds, 1, 0.0, seed=0)


def test_small_strata_lists_only_those_below_the_fold_count():
    strata = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 1)
    assert small_strata(strata, 5) == {"b": 4, "c": 1}
    assert small_strata(strata, 4) == {"c": 1}
    assert small_strata(None, 5) == {} and small_strata(strata, 1) == {}
