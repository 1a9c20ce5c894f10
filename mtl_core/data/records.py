"""The data contract between plugins and the engine.

A plugin hands the engine :class:`Records`: one row per case with an id, an image path and, per task, a float
target where ``NaN`` means "missing". The engine turns them into batches
``{"image" | "features": Tensor, "targets": {task: Tensor}, "mask": {task: BoolTensor}, "id": [...]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..tasks import Task

ImageReader = Callable[[Path], np.ndarray]


@dataclass
class Records:
    """Cases of a data set.

    Attributes:
        ids: unique case identifiers.
        paths: image file per case.
        targets: task name -> float64 array (N,), or (N, k) for a task with ``target_width`` k; ``NaN`` for a
            missing label; class targets are class indices.
        strata: optional named groupings for breakdowns and stratified splits (name -> array of labels).
        groups: optional patient/group key per case, for group-aware splits.
        masks: optional explicit label masks (task -> bool array (N,), True = labelled, one flag per case whatever
            the target's width). Where given, a target the task does not count as labelled (NaN) under a True mask
            is an error, and unlabelled targets are ignored whatever their value.
    """

    ids: list[str]
    paths: list[Path]
    targets: dict[str, np.ndarray]
    strata: dict[str, np.ndarray] = field(default_factory=dict)
    groups: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def validate(self, tasks: list[Task], source: str = "") -> None:
        """Check shapes, unique ids and every task's targets; raise :class:`DataError` naming the culprit."""
        where = f" in {source}" if source else ""
        n = len(self.ids)
        if n == 0:
            raise DataError(f"the data set{where} has no cases")
        if len(self.paths) != n:
            raise DataError(f"the data set{where} has {n} ids but {len(self.paths)} image paths")
        seen: set[str] = set()
        for case_id in self.ids:
            if case_id in seen:
                raise DataError(f"duplicate case id {case_id!r}{where}; every case needs a unique id")
            seen.add(case_id)
        for task in tasks:
            if task.name not in self.targets:
                raise DataError(f"the data set{where} has no targets for task {task.name!r}")
            values = np.asarray(self.targets[task.name], dtype=np.float64)
            expected = (n,) if task.target_width == 1 else (n, task.target_width)
            if values.shape != expected:
                raise DataError(f"task {task.name!r}{where}: targets have shape {values.shape}, expected {expected}")
            if task.name in self.masks:
                values = self._apply_mask(task, values, where)
            task.validate(values, where)
            self.targets[task.name] = values

    def _apply_mask(self, task: Task, values: np.ndarray, where: str) -> np.ndarray:
        mask = np.asarray(self.masks[task.name], dtype=bool)
        if mask.shape != values.shape[:1]:
            raise DataError(f"task {task.name!r}{where}: mask has shape {mask.shape}, targets {values.shape}; "
                            f"expected one flag per case")
        bad = np.flatnonzero(mask & ~task.labelled(values))
        if len(bad):
            raise DataError(f"task {task.name!r}{where}: case {self.ids[bad[0]]!r} has a NaN target but is not "
                            f"marked missing; fix the value or set its mask to False")
        return np.where(mask.reshape(-1, *[1] * (values.ndim - 1)), values, np.nan)

    def subset(self, index: np.ndarray) -> Records:
        """The cases at ``index`` (an integer array), in that order."""
        return Records(
            ids=[self.ids[i] for i in index],
            paths=[self.paths[i] for i in index],
            targets={k: v[index] for k, v in self.targets.items()},
            strata={k: v[index] for k, v in self.strata.items()},
            groups=None if self.groups is None else self.groups[index],
            masks={k: v[index] for k, v in self.masks.items()},
        )


def reader_identity(reader: ImageReader) -> str:
    """A reader's qualified name: part of the cache keys when no better identity is given."""
    return f"{getattr(reader, '__module__', '')}.{getattr(reader, '__qualname__', reader)}"


def load_image_tensor(path: Path, reader: ImageReader, size: int) -> torch.Tensor:
    """Read one image with ``reader`` and resize it to (1, size, size), values in [0, 1]."""
    pixels = reader(Path(path))
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    if image.ndim == 2:
        image = image.unsqueeze(0)  # (1, H, W)
    if image.shape[-2:] != (size, size):
        image = F.interpolate(image.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)[0]
    return image.clamp_(0.0, 1.0)


class ImageDataset(torch.utils.data.Dataset):
    """Decodes and resizes images (in DataLoader workers when ``num_workers > 0``). Item: (index, image).

    With ``cache`` (an :class:`~mtl_core.data.input_cache.InputCache`), images come from the persistent cache of
    preprocessed inputs where they are, and are stored there when not; ``digests`` (the files' SHA-256, when
    already known) spare hashing them again.
    """

    def __init__(self, paths: list[Path], reader: ImageReader, size: int, cache=None,
                 digests: list[str] | None = None) -> None:
        self.paths, self.reader, self.size = list(paths), reader, size
        self.cache, self.digests = cache, digests

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        if self.cache is not None:
            digest = self.digests[index] if self.digests is not None else None
            return index, self.cache.image(self.paths[index], self.reader, self.size, digest)
        return index, load_image_tensor(self.paths[index], self.reader, self.size)


@dataclass(frozen=True)
class TensorData:
    """Model inputs (cached features (N, F) or images (N, C, H, W)) with encoded targets and masks.

    With ``rows``, case ``i`` is ``inputs[rows[i]]``: the parts of a split (and every fold) share the one full
    matrix instead of each holding a copy of its rows.
    """

    inputs: torch.Tensor
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    ids: list[str]
    is_features: bool = True
    rows: torch.Tensor | None = None

    @classmethod
    def build(cls, inputs: torch.Tensor, records: Records, tasks: list[Task], is_features: bool = True,
              rows: np.ndarray | None = None) -> TensorData:
        """Encode ``records``' targets with each (already fitted) task; ``rows`` as in the class."""
        targets, masks = {}, {}
        for task in tasks:
            targets[task.name], masks[task.name] = task.encode(np.asarray(records.targets[task.name], np.float64))
        index = None if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return cls(inputs, targets, masks, list(records.ids), is_features, index)

    def __len__(self) -> int:
        return len(self.ids)

    def batch_count(self, batch_size: int, share: tuple[int, int] | None = None) -> int:
        """How many batches :meth:`batches` yields with these arguments."""
        full, rest = divmod(len(self), batch_size)
        return full + int(rest > 0 and (share is None or rest >= share[1]))

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                share: tuple[int, int] | None = None) -> Iterator[dict]:
        """Yield batch dictionaries, shuffled when a generator is given.

        Args:
            share: (rank, world) of a distributed run (:mod:`mtl_core.distributed`): every process draws the same
                global batches of ``batch_size`` and keeps its disjoint share of each (every ``world``-th case from
                its rank); a last global batch with fewer cases than processes is left out on every process.
        """
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            if share is not None:
                if len(idx) < share[1]:
                    break
                idx = idx[share[0]::share[1]]
            yield {
                "features" if self.is_features else "image": self.inputs[idx if self.rows is None else self.rows[idx]],
                "targets": {k: v[idx] for k, v in self.targets.items()},
                "mask": {k: v[idx] for k, v in self.masks.items()},
                "id": [self.ids[i] for i in idx.tolist()],
            }


@dataclass(frozen=True, eq=False)  # tensors have no single truth value: compared by identity
class TrainingInputs:
    """What every training of a run reads: one row per case of the records, computed once per run.

    Attributes:
        tensor: cached fused features (N, F) or (N, C, h, w) of frozen backbones, else the resized images
            (N, C, H, W) that trained backbones read.
        is_features: True when ``tensor`` holds features, False for images.
        cache_stats: feature-cache hits and misses of this run (empty when no cache was used), for the report.
    """

    tensor: torch.Tensor
    is_features: bool = True
    cache_stats: dict[str, int] = field(default_factory=dict)

    def part(self, records: Records, tasks: list[Task], rows: np.ndarray) -> TensorData:
        """The cases at ``rows`` with their targets encoded by the (fitted) tasks; shares ``tensor``."""
        return TensorData.build(self.tensor, records.subset(rows), tasks, self.is_features, rows=rows)
