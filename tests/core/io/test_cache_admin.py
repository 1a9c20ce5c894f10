"""`mtl cache` and `mtl cache prune`: size per kind, pruning by age and by size (least recently used first), never
outside the cache folder, never through a symbolic link, never a write in progress or a lock file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mtl_core.cli import EXIT_USER_ERROR, main
from mtl_core.errors import ConfigError
from mtl_core.io import cache_entries, cache_report, prune_cache
from mtl_core.io.cache_admin import parse_age, parse_size

DAY = 86400


def _file(path: Path, size: int, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache with entries of every kind and age, a lock, temporaries young and old, and links out of it."""
    root, outside = tmp_path / "cache", tmp_path / "precious"
    _file(outside / "keep.bin", 5000, 400)
    _file(root / "features" / "k1" / "0.aa.safetensors", 1000, 60)
    _file(root / "features" / "k1" / "1.bb.safetensors", 1000, 1)
    _file(root / "features" / "k2" / "0.cc.safetensors", 3000, 10)
    _file(root / "inputs" / "ab" / "abcd.safetensors", 2000, 45)
    _file(root / "memo" / "weights" / "m.json", 100, 90)
    for name in ("labels.csv", "images/0.png"):
        _file(root / "synthetic" / "table" / "0123456789ab" / name, 500, 40)
    _file(root / "synthetic" / "table" / "0123456789ab.lock", 0, 100)
    _file(root / "features" / "k1" / ".2.dd.safetensors.x1.tmp", 700, 0)  # being written now
    _file(root / "features" / "k2" / ".3.ee.safetensors.x2.tmp", 800, 3)  # left by a killed process
    (root / "features" / "link-out").symlink_to(outside)
    (root / "memo" / "file-link").symlink_to(outside / "keep.bin")
    (root / "linked-kind").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv("MTL_CACHE_DIR", str(root))
    return root


def _names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_the_report_counts_entries_and_bytes_per_kind(cache):
    text = "\n".join(cache_report())
    assert f"cache: {cache}" in text
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[2:]}
    assert rows["features"] == ["4", "5.66K"]  # three buckets and the orphaned temporary; not the young one
    assert rows["inputs"] == ["1", "1.95K"] and rows["memo"] == ["1", "100B"]
    assert rows["synthetic"] == ["1", "1000B"]  # one data set folder, one entry
    assert "linked-kind" not in rows and rows["total"][0] == "7"


def test_older_than_removes_entries_unused_for_that_long_and_orphaned_temporaries(cache, tmp_path):
    before = _names(cache)
    lines = prune_cache(older_than="30d", dry_run=True)
    assert _names(cache) == before and lines[-1].startswith("would remove 5 of 7 entries")
    prune_cache(older_than="30d")
    assert _names(cache) == {"features/k1/1.bb.safetensors", "features/k2/0.cc.safetensors",
                             "features/k1/.2.dd.safetensors.x1.tmp", "synthetic/table/0123456789ab.lock"}
    assert (tmp_path / "precious" / "keep.bin").stat().st_size == 5000  # nothing outside, links left alone
    assert (cache / "features" / "link-out").is_symlink() and (cache / "memo" / "file-link").is_symlink()
    assert not (cache / "inputs" / "ab").exists() and (cache / "inputs").is_dir()  # emptied folders go, kinds stay


def test_max_size_removes_the_least_recently_used_first(cache):
    prune_cache(max_size="4.5K")  # 8.7K of entries: the orphan, then the oldest until at most 4.5K are left
    left = _names(cache)
    assert "features/k1/1.bb.safetensors" in left and "features/k2/0.cc.safetensors" in left  # the newest
    assert "memo/weights/m.json" not in left and "features/k1/0.aa.safetensors" not in left
    assert sum(e.size for e in cache_entries()) <= 4.5 * 1024


def test_a_cache_that_is_missing_or_empty_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path / "none"))
    assert cache_report()[-1] == "empty"
    assert prune_cache(older_than="1d")[-1].startswith("removed 0 of 0 entries")
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("text, seconds", [("30d", 30 * DAY), ("12h", 43200), ("90m", 5400), ("2w", 14 * DAY),
                                           ("1.5d", 1.5 * DAY)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text, size", [("20G", 20 << 30), ("500M", 500 << 20), ("100K", 100 << 10),
                                        ("4096", 4096), ("1.5GB", 3 << 29), ("2GiB", 2 << 30)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("argv, words", [
    (["cache", "prune"], "needs --older-than"),
    (["cache", "prune", "--older-than", "soon"], "is not an age"),
    (["cache", "prune", "--max-size=-1G"], "is not a size"),
])
def test_bad_prune_arguments_are_one_line_and_exit_2(cache, capsys, argv, words):
    before = _names(cache)
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err
    assert _names(cache) == before


def test_the_cli_shows_and_prunes(cache, capsys):
    assert main(["cache"]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert main(["cache", "prune", "--older-than", "50d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove features features/k1/0.aa.safetensors" in out and "memo/weights/m.json" in out
    assert (cache / "memo" / "weights" / "m.json").exists()
    assert main(["cache", "prune", "--older-than", "50d"]) == 0
    assert "removed 3 of 7 entries" in capsys.readouterr().out
    assert not (cache / "memo" / "weights" / "m.json").exists()


def test_parse_errors_are_config_errors():
    with pytest.raises(ConfigError):
        parse_size("lots")
