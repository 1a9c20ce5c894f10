"""`mtl plugins check`: a sound plugin passes every check; each kind of broken plugin fails the check that
concerns it, with a message naming the problem, and only that check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from mtl_core import BinaryTask, ClassificationTask, Plugin, Records, RegressionTask, check_plugin

REPO = Path(__file__).resolve().parents[3]
N = 12


class GoodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0


class Good(Plugin):
    """Twelve noise PNGs; a 3-class, a binary and a regression task with some missing labels."""

    name = "good"
    Options = GoodOptions
    stratify_key = "grade"

    def tasks(self):
        return [ClassificationTask("grade", classes=["low", "mid", "high"]), BinaryTask("flag"),
                RegressionTask("size", unit="mm")]

    def targets(self) -> dict[str, np.ndarray]:
        grade = np.arange(N) % 3.0
        grade[5] = np.nan
        size = np.linspace(1, 5, N)
        size[::4] = np.nan
        return {"grade": grade, "flag": np.arange(N) % 2.0, "size": size}

    def load_records(self, data_dir: Path) -> Records:
        paths = sorted(Path(data_dir).glob("*.png"))
        targets = self.targets()
        return Records([p.stem for p in paths], paths, targets, strata={"grade": targets["grade"].astype(str)})

    def synthetic_data(self, out_dir: Path, rng=None) -> Path:
        from PIL import Image

        out_dir.mkdir(parents=True, exist_ok=True)
        rng = rng or np.random.default_rng(self.options.seed)
        for i in range(N):
            Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(out_dir / f"case{i:02d}.png")
        return out_dir


class LaxOptions(BaseModel):
    seed: int = 0


class Lax(Good):
    Options = LaxOptions


class DuplicateTasks(Good):
    def tasks(self):
        return super().tasks() + [RegressionTask("size")]


class NoTasks(Good):
    def tasks(self):
        return []


class NotRecords(Good):
    def load_records(self, data_dir):
        return {"ids": []}


class DuplicateIds(Good):
    def load_records(self, data_dir):
        records = super().load_records(data_dir)
        records.ids[1] = records.ids[0]
        return records


class WrongShape(Good):
    def targets(self):
        return super().targets() | {"size": np.ones(N - 1)}


class MissingStratum(Good):
    stratify_key = "site"


class ClassOutOfRange(Good):
    def targets(self):
        targets = super().targets()
        targets["grade"][0] = 3
        return targets


class InfiniteRegression(Good):
    def targets(self):
        targets = super().targets()
        targets["size"][1] = np.inf
        return targets


class InconsistentMask(Good):
    def load_records(self, data_dir):
        records = super().load_records(data_dir)
        records.masks = {"size": np.ones(N, dtype=bool)}  # but size is NaN for some cases
        return records


class Uint8Images(Good):
    def read_image(self, path):
        return (super().read_image(path) * 255).astype(np.uint8)


class ColourImages(Good):
    def read_image(self, path):
        return np.repeat(super().read_image(path)[..., None], 3, axis=2)


class Unseeded(Good):
    def load_records(self, data_dir):
        records = super().load_records(data_dir)
        return records.subset(np.random.default_rng().permutation(N))


class UnseededSynthetic(Good):
    def synthetic_data(self, out_dir, rng=None):
        return super().synthetic_data(out_dir, np.random.default_rng())


class Unpicklable(Good):
    def __init__(self, options=None):
        super().__init__(options)
        self.log = lambda message: print(message)


class Broken(Good):
    """Everything at once: the CLI test expects every problem in one report."""

    Options = LaxOptions

    def tasks(self):
        return super().tasks() + [RegressionTask("size")]

    def targets(self):
        targets = super().targets()
        targets["grade"][0], targets["size"][1] = 3, np.inf
        return targets

    def load_records(self, data_dir):
        return super().load_records(data_dir).subset(np.random.default_rng().permutation(N))

    def __init__(self, options=None):
        super().__init__(options)
        self.log = lambda message: print(message)


DEFECTS = [
    (Lax, "options", "accepts unknown keys (extra='ignore'), expected extra='forbid'"),
    (DuplicateTasks, "tasks", "task name 'size' appears 2 times, expected unique names"),
    (NoTasks, "tasks", "tasks() returned [], expected a non-empty list of Task objects"),
    (NotRecords, "data", "load_records() returned dict, expected mtl_core.Records"),
    (DuplicateIds, "records", "id 'case00' appears more than once, expected unique ids"),
    (WrongShape, "records", "Records.targets['size'] has shape (11,), expected (12,)"),
    (MissingStratum, "records", "stratify_key is 'site' but Records.strata has ['grade']"),
    (ClassOutOfRange, "labels", "task 'grade': case 'case00' has target 3 (1 such case(s)), expected an integer "
                                "class index in 0..2 (low, mid, high)"),
    (InfiniteRegression, "labels", "task 'size': case 'case01' has target inf (1 such case(s)), expected a finite"),
    (InconsistentMask, "labels", "task 'size': case 'case00' is NaN but its mask says labelled"),
    (Uint8Images, "batch", "read_image(case00.png) returned dtype uint8, expected float32 in [0, 1]"),
    (ColourImages, "batch", "read_image(case00.png) returned shape (24, 24, 3), expected a 2-D grey image (H, W)"),
    (Unseeded, "determinism", "a second load_records() with the same options gave different ids, paths"),
    (UnseededSynthetic, "determinism", "synthetic_data() wrote different files with the same options"),
    (Unpicklable, "pickling", "pickle.dumps(plugin) failed (AttributeError: Can't"),
]


def test_a_sound_plugin_passes_every_check():
    report = check_plugin(Good)
    assert report.ok, report.format()
    assert [r.name for r in report.results] == ["options", "tasks", "data", "records", "labels", "batch",
                                                "determinism", "pickling"]
    assert report.format().endswith("passed: 8 checks")


@pytest.mark.parametrize(("cls", "check", "message"), DEFECTS, ids=[d[0].__name__ for d in DEFECTS])
def test_each_defect_fails_its_own_check_with_a_message_that_names_it(cls, check, message):
    report = check_plugin(cls)
    assert not report.ok
    failed = {r.name: r.problems for r in report.results if r.problems}
    assert list(failed) == [check], report.format()
    assert any(message in problem for problem in failed[check]), report.format()


def test_given_data_is_checked_instead_of_synthetic_data(tmp_path):
    data = Good().synthetic_data(tmp_path / "data")
    report = check_plugin(Good, data=data, samples=3)
    assert report.ok, report.format()
    assert f"{N} cases from data in {data}" in report.format()
    assert "3 samples" in report.format()


def test_a_plugin_without_data_says_to_give_some():
    class NoData(Good):
        def synthetic_data(self, out_dir, rng=None):
            return None

    report = check_plugin(NoData)
    data = next(r for r in report.results if r.name == "data")
    assert "no data to check" in data.problems[0] and "--data PATH" in data.problems[0]
    assert all(r.skipped for r in report.results[3:])


def test_the_cli_reports_every_problem_of_a_broken_plugin_and_exits_1():
    done = subprocess.run([sys.executable, "-m", "mtl_core.cli", "plugins", "check",
                           "tests/core/plugins/test_conformance.py:Broken"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    for fragment in ("accepts unknown keys", "task name 'size' appears 2 times", "case 'case00' has target 3",
                     "different ids", "pickle.dumps(plugin) failed"):
        assert fragment in out, out
    assert "FAILED: options, tasks, labels, determinism, pickling (5 of 8 checks); skipped: batch" in out
