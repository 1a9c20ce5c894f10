"""The data checks of ``mtl plugins check``: what a plugin reads from a data folder, on a few samples.

Each check takes the :class:`DataContext` the earlier ones filled and returns a :class:`CheckResult` whose problems
say what the plugin returned and what was expected, one sentence each. :func:`run_data_checks` runs them in order
and skips a check whose prerequisite failed (it would only repeat the problem).
"""

from __future__ import annotations

import copy
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from ..data import ImageDataset, Records, TensorData, load_image_tensor
from ..errors import MTLError
from ..tasks import Task, format_target
from .contract import Plugin

BATCH_KEYS = ("image", "targets", "mask", "id")


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, its problems (none: passed), a one-line summary, and whether it was skipped."""

    name: str
    problems: tuple[str, ...] = ()
    summary: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """True when the check ran and found nothing."""
        return not self.problems and not self.skipped


def describe_exception(exc: BaseException) -> str:
    """An exception as a problem: an MTLError's own message, else its type and message."""
    return str(exc) if isinstance(exc, MTLError) else f"{type(exc).__name__}: {exc}"


def _nan_equal(a: Any, b: Any) -> bool:
    try:
        return np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True)
    except (TypeError, ValueError):
        return list(np.asarray(a).astype(str)) == list(np.asarray(b).astype(str))


@dataclass
class DataContext:
    """What the checks share: the plugin, its tasks, the data and the records read from it."""

    cls: type
    options: BaseModel
    plugin: Plugin
    tasks: list[Task]
    data_dir: Path | None = None
    generated: bool = False
    records: Records | None = None
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    image_size: int = 64
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


def check_data(ctx: DataContext, data: Path | None) -> CheckResult:
    """Find the data (``data``, else the plugin's synthetic data) and read it with load_records()."""
    if data is None:
        try:
            made = ctx.plugin.synthetic_data(ctx.scratch / "synthetic")
        except Exception as exc:  # noqa: BLE001
            return CheckResult("data", (f"synthetic_data() raised {describe_exception(exc)}",))
        if made is None:
            return CheckResult("data", ("no data to check: the plugin has no synthetic data (synthetic_data() "
                                        "returned None), expected --data PATH",))
        ctx.data_dir, ctx.generated = Path(made), True
    else:
        ctx.data_dir = Path(data).expanduser()
    try:
        records = ctx.plugin.load_records(ctx.data_dir)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("data", (f"load_records({ctx.data_dir}) raised {describe_exception(exc)}",))
    if not isinstance(records, Records):
        return CheckResult("data", (f"load_records() returned {type(records).__name__}, expected mtl_core.Records",))
    ctx.records = records
    source = "synthetic data" if ctx.generated else "data"
    return CheckResult("data", (), f"{len(records)} cases from {source} in {ctx.data_dir}")


def _sample(n: int, samples: int) -> np.ndarray:
    """Up to ``samples`` case indices spread over the data set (first and last included)."""
    return np.unique(np.linspace(0, n - 1, max(1, min(samples, n))).round().astype(int))


def _shape_problems(records: Records, tasks: list[Task], stratify_key: str | None) -> list[str]:
    n, problems = len(records.ids), []
    arrays = [(f"targets[{t.name!r}]", records.targets.get(t.name), t.target_width) for t in tasks]
    arrays += [(f"strata[{k!r}]", v, 1) for k, v in records.strata.items()]
    arrays += [(f"masks[{k!r}]", v, 1) for k, v in records.masks.items()]
    arrays += [("groups", records.groups, 1)] if records.groups is not None else []
    for what, values, width in arrays:
        shape, per_case = ((n,), "one value") if width == 1 else ((n, width), f"a row of {width} values")
        if values is None:
            problems.append(f"Records.{what} is absent, expected a float array {shape} with NaN where missing")
        elif np.shape(values) != shape:
            problems.append(f"Records.{what} has shape {np.shape(values)}, expected {shape}: {per_case} per case")
    names = {t.name for t in tasks}
    problems += [f"Records.masks has key {k!r}, expected only task names ({', '.join(sorted(names))})"
                 for k in records.masks if k not in names]
    problems += [f"Records.masks[{k!r}] has dtype {np.asarray(v).dtype}, expected bool (True = labelled)"
                 for k, v in records.masks.items() if np.asarray(v).dtype != bool]
    if stratify_key and stratify_key not in records.strata:
        problems.append(f"stratify_key is {stratify_key!r} but Records.strata has {sorted(records.strata)}, "
                        f"expected it among them (or stratify_key = None)")
    return problems


def check_records(ctx: DataContext, samples: int) -> CheckResult:
    """Records: unique string ids, one existing image per id, one (N,) array per task, stratum and mask."""
    records = ctx.records
    assert records is not None
    n, problems = len(records.ids), []
    if n == 0:
        return CheckResult("records", ("load_records() returned no cases, expected at least one",))
    bad_ids = [i for i in records.ids if not isinstance(i, str) or not i]
    if bad_ids:
        problems.append(f"id {bad_ids[0]!r} is not a non-empty string, expected str ids")
    repeated = [i for i, count in Counter(map(str, records.ids)).items() if count > 1]
    problems += [f"id {repeated[0]!r} appears more than once, expected unique ids"] if repeated else []
    if len(records.paths) != n:
        problems.append(f"Records has {n} ids but {len(records.paths)} paths, expected one image path per id")
    else:
        absent = [p for p in records.paths if not Path(p).is_file()]
        problems += [f"image {absent[0]} (and {len(absent) - 1} more) does not exist, expected a file per case"
                     ] if absent else []
    problems += _shape_problems(records, ctx.tasks, getattr(ctx.plugin, "stratify_key", None))
    ctx.sample = _sample(n, samples)
    return CheckResult("records", tuple(problems), f"{n} cases, {len(ctx.tasks)} target arrays, strata "
                                                   f"{sorted(records.strata) or 'none'}")


def _label_problems(task: Task, ids: list[str], values: np.ndarray, mask: np.ndarray | None) -> list[str]:
    present = task.labelled(values)
    labelled = present if mask is None else np.asarray(mask, bool)
    problems = []
    if mask is not None and (labelled & ~present).any():
        case = ids[int(np.flatnonzero(labelled & ~present)[0])]
        problems.append(f"task {task.name!r}: case {case!r} is NaN but its mask says labelled, expected a value or "
                        f"mask False")
    invalid, expected = task.invalid_targets(values)
    bad = labelled & present & invalid
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        problems.append(f"task {task.name!r}: case {ids[i]!r} has target {format_target(values[i])} "
                        f"({int(bad.sum())} such case(s)), expected {expected}")
    if not labelled.any():
        problems.append(f"task {task.name!r} has no labelled case, expected at least one (it would never train)")
    return problems


def _targets(records: Records, task: Task) -> np.ndarray | None:
    """The task's targets as float64 (N,) or (N, k) if they have that shape, else None (the records check's case)."""
    n, width = len(records.ids), task.target_width
    try:
        values = np.asarray(records.targets[task.name], np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    values = values.reshape(-1) if width == 1 else values
    return values if values.shape == ((n,) if width == 1 else (n, width)) else None


def check_labels(ctx: DataContext) -> CheckResult:
    """Class indices in range, binary targets 0/1, regression targets finite where labelled, masks consistent."""
    records = ctx.records
    assert records is not None
    problems: list[str] = []
    for task in {t.name: t for t in ctx.tasks}.values():  # a repeated name is the tasks check's problem
        values = _targets(records, task)
        mask = records.masks.get(task.name)
        if values is not None and (mask is None or np.shape(mask) == values.shape[:1]):  # else: records check
            problems += _label_problems(task, records.ids, values, mask)
    if not problems:
        try:
            _validated(records, ctx.tasks)
        except MTLError as exc:
            problems.append(f"Records.validate() failed: {exc}")
    labelled = {t.name: 0 if (v := _targets(records, t)) is None else int(t.labelled(v).sum()) for t in ctx.tasks}
    return CheckResult("labels", tuple(problems), "labelled cases: " + ", ".join(f"{k} {v}"
                                                                                for k, v in labelled.items()))


def _validated(records: Records, tasks: list[Task]) -> Records:
    """A validated copy (validate() replaces target arrays; the original stays as the plugin returned it)."""
    copy = Records(list(records.ids), list(records.paths), dict(records.targets), dict(records.strata),
                   records.groups, dict(records.masks))
    copy.validate(tasks)
    return copy


def _image_problem(path: Path, pixels: Any) -> str | None:
    """What is wrong with what read_image() returned for ``path``, or None."""
    head = f"read_image({Path(path).name}) returned"
    if not isinstance(pixels, np.ndarray):
        return f"{head} {type(pixels).__name__}, expected a numpy array (H, W)"
    if pixels.ndim != 2 or 0 in pixels.shape:
        return f"{head} shape {pixels.shape}, expected a 2-D grey image (H, W)"
    if not np.issubdtype(pixels.dtype, np.floating):
        return f"{head} dtype {pixels.dtype}, expected float32 in [0, 1] (divide by the bit depth's maximum)"
    if not np.isfinite(pixels).all():
        return f"{head} NaN or infinite pixels, expected finite values in [0, 1]"
    if pixels.min() < 0 or pixels.max() > 1:
        return f"{head} values in [{pixels.min():g}, {pixels.max():g}], expected [0, 1]"
    return None


def _read_sample(ctx: DataContext) -> tuple[list[np.ndarray], list[str]]:
    assert ctx.records is not None
    images, problems = [], []
    for i in ctx.sample:
        path = ctx.records.paths[i]
        try:
            pixels = ctx.plugin.read_image(Path(path))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"read_image({Path(path).name}) raised {describe_exception(exc)}")
            continue
        problem = _image_problem(path, pixels)
        problems += [problem] if problem else []
        images.append(pixels)
    return images, list(dict.fromkeys(problems))


def _spec(tensor: Any) -> Any:
    return None if tensor is None else (tuple(tensor.shape), tensor.dtype)


def _batch_problems(batch: dict, ctx: DataContext, ids: list[str]) -> list[str]:
    b, s = len(ids), ctx.image_size
    problems = [] if tuple(batch) == BATCH_KEYS else [f"batch keys {tuple(batch)}, expected {BATCH_KEYS}"]
    if _spec(batch.get("image")) != ((b, 1, s, s), torch.float32):
        problems.append(f"batch image {_spec(batch.get('image'))}, expected (({b}, 1, {s}, {s}), torch.float32)")
    for task in ctx.tasks:
        target, mask = batch["targets"].get(task.name), batch["mask"].get(task.name)
        want = ((b,), task.target_dtype)  # of several columns, an encoding's own: only the cases are fixed
        got = _spec(target) if task.target_width == 1 or target is None else (tuple(target.shape[:1]), target.dtype)
        if got != want:
            problems.append(f"task {task.name!r}: batch target {_spec(target)}, expected {want}"
                            f"{'' if task.target_width == 1 else ' in its first dimension'}")
        if _spec(mask) != ((b,), torch.bool):
            problems.append(f"task {task.name!r}: batch mask {_spec(mask)}, expected (({b},), torch.bool)")
    if batch.get("id") != ids:
        problems.append(f"batch ids {batch.get('id')}, expected the sampled case ids {ids}")
    return problems


def check_batch(ctx: DataContext) -> CheckResult:
    """Sampled images read as (H, W) floats in [0, 1] and make the batch contract the engine trains on."""
    _, problems = _read_sample(ctx)
    if problems:
        return CheckResult("batch", tuple(problems))
    assert ctx.records is not None
    try:
        part = _validated(ctx.records, ctx.tasks).subset(ctx.sample)
        tasks = copy.deepcopy(ctx.tasks)
        for task in tasks:
            task.fit(np.asarray(part.targets[task.name], np.float64))
        images = torch.stack([load_image_tensor(p, ctx.plugin.read_image, ctx.image_size) for p in part.paths])
        batch = next(TensorData.build(images, part, tasks, is_features=False).batches(len(part)))
    except Exception as exc:  # noqa: BLE001
        return CheckResult("batch", (f"building a batch raised {describe_exception(exc)}",))
    problems = _batch_problems(batch, ctx, list(part.ids))
    shape = tuple(batch["image"].shape)
    return CheckResult("batch", tuple(problems), f"{len(part)} samples: image {shape} float32, targets and masks "
                                                 f"({len(part)},) for {len(tasks)} tasks")


def _records_differences(a: Records, b: Records) -> list[str]:
    diffs = [] if list(a.ids) == list(b.ids) else ["ids"]
    diffs += [] if [str(p) for p in a.paths] == [str(p) for p in b.paths] else ["paths"]
    for kind, first, second in (("targets", a.targets, b.targets), ("strata", a.strata, b.strata),
                                ("masks", a.masks, b.masks)):
        diffs += [f"{kind}[{k!r}]" for k in sorted(set(first) | set(second))
                  if k not in first or k not in second or not _nan_equal(first[k], second[k])]
    if (a.groups is None) != (b.groups is None) or (a.groups is not None and not _nan_equal(a.groups, b.groups)):
        diffs.append("groups")
    return diffs


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_determinism(ctx: DataContext) -> CheckResult:
    """The same options give the same records and pixels, and the same synthetic files for the same seed."""
    assert ctx.records is not None and ctx.data_dir is not None
    problems = []
    try:
        again = ctx.cls(ctx.options).load_records(ctx.data_dir)
        diffs = _records_differences(ctx.records, again)
    except Exception as exc:  # noqa: BLE001
        diffs, problems = [], [f"a second load_records() raised {describe_exception(exc)}"]
    if diffs:
        problems.append(f"a second load_records() with the same options gave different {', '.join(diffs)}, "
                        f"expected identical records: seed every random choice from the options")
    first, _ = _read_sample(ctx)
    second, _ = _read_sample(ctx)
    if not all(np.array_equal(x, y) for x, y in zip(first, second, strict=True)):
        problems.append("read_image() gave different pixels for the same file, expected identical pixels")
    if ctx.generated:
        copy_dir = ctx.plugin.synthetic_data(ctx.scratch / "synthetic_again")
        differing = _tree_differences(ctx.data_dir, Path(copy_dir)) if copy_dir else ["(returned None)"]
        if differing:
            problems.append(f"synthetic_data() wrote different files with the same options ({', '.join(differing[:3])}"
                            f"{', ...' if len(differing) > 3 else ''}), expected byte-identical files for a seed")
    what = "records, pixels and synthetic files" if ctx.generated else "records and pixels"
    return CheckResult("determinism", tuple(problems), f"{what} compared over two calls")


def _tree_differences(a: Path, b: Path) -> list[str]:
    first, second = _tree(a), _tree(b)
    return [name for name in sorted(set(first) | set(second)) if first.get(name) != second.get(name)]


def check_pickling(ctx: DataContext) -> CheckResult:
    """The plugin and its image reader pickle: DataLoader workers (``data.workers > 0``) receive them so."""
    assert ctx.records is not None
    hint = ("DataLoader workers (data.workers > 0) receive read_image by pickling the plugin: keep lambdas, open "
            "files, locks and generators out of its attributes")
    try:  # serialising is the test; the copy that reads back uses the same reduce protocol without unpickling
        pickle.dumps(ctx.plugin)
        dataset = ImageDataset([ctx.records.paths[i] for i in ctx.sample], ctx.plugin.read_image, ctx.image_size)
        pickle.dumps(dataset)
        clone = copy.deepcopy(ctx.plugin)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("pickling", (f"pickle.dumps(plugin) failed ({type(exc).__name__}: {exc}), expected a "
                                        f"picklable plugin; {hint}",))
    path = Path(ctx.records.paths[int(ctx.sample[0])])
    try:
        same = np.array_equal(clone.read_image(path), ctx.plugin.read_image(path))
    except Exception as exc:  # noqa: BLE001
        return CheckResult("pickling", (f"read_image() of a copied plugin raised {describe_exception(exc)}",))
    problems = () if same else ("a copied plugin reads different pixels, expected the same image",)
    return CheckResult("pickling", problems, "plugin and image dataset pickle; a copy reads the same pixels")

def run_data_checks(ctx: DataContext, data: Path | None, samples: int) -> list[CheckResult]:
    """The data checks in order; one whose prerequisite failed is skipped (it would only repeat the problem)."""
    steps: list[tuple[str, tuple[str, ...], Callable[[], CheckResult]]] = [
        ("data", (), lambda: check_data(ctx, data)),
        ("records", ("data",), lambda: check_records(ctx, samples)),
        ("labels", ("records",), lambda: check_labels(ctx)),
        ("batch", ("records", "labels"), lambda: check_batch(ctx)),
        ("determinism", ("records",), lambda: check_determinism(ctx)),
        ("pickling", ("records",), lambda: check_pickling(ctx))]
    results: dict[str, CheckResult] = {}
    for name, needs, step in steps:
        failed = [n for n in needs if not results[n].ok]
        results[name] = CheckResult(name, (), f"skipped: needs the {failed[0]} check to pass", skipped=True) \
            if failed else step()
    return list(results.values())
