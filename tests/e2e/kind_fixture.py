"""Two task kinds registered from outside the engine, and a tiny plugin that uses them.

``count`` (how many blobs an image shows: Poisson regression, one value per case) reuses the scatter figure and
gets a report section of its own. ``shift`` (where the first blob sits relative to the image centre: two target
columns dx, dy) has no figure and reports regression-like components ``<name>_dx`` and ``<name>_dy``. Nothing in
``mtl_core`` knows either kind: ``mtl run`` and ``mtl predict`` import this module as the plugin ``kinds_fixture``
through an entry point that tests/e2e/test_task_kinds.py installs, and tests/core/tasks/test_tasks.py imports it to test
the registry with kinds it did not ship with. No pytest here: the CLI imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from mtl_core import Plugin, Records, RegressionTask, Task, TaskSchema, register_task_kind
from mtl_core.tasks import masked_mean
from mtl_core.tasks.metrics import regression_errors


@register_task_kind
@dataclass
class CountTask(Task):
    """A count per image: Poisson negative log-likelihood on the log rate the head outputs."""

    kind: ClassVar[str] = "count"
    summary_metrics: ClassVar[tuple[str, ...]] = ("mae", "exact")
    higher_is_better: ClassVar[dict[str, bool]] = {"mae": False, "exact": True}
    figure: ClassVar[str | None] = "scatter"
    _mean: float = field(default=1.0, init=False, repr=False)

    class Schema(TaskSchema):
        kind: Literal["count"]
        mean: float = 1.0

    @property
    def out_features(self) -> int:
        return 1

    def invalid_targets(self, values: np.ndarray) -> tuple[np.ndarray, str]:
        return ~np.isnan(values) & ((values < 0) | (values != np.round(values))), "a whole number >= 0"

    def fit(self, values: np.ndarray) -> None:
        labelled = values[self.labelled(values)]
        self._mean = float(labelled.mean()) if len(labelled) else 1.0

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.labelled(values)
        return torch.from_numpy(np.where(mask, values, 0.0).astype(np.float32)), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = torch.where(mask, target, torch.zeros_like(target))
        per_case = F.poisson_nll_loss(output.float().reshape(-1), target, log_input=True, reduction="none")
        return masked_mean(per_case, mask)

    def decode(self, output: torch.Tensor) -> np.ndarray:
        return torch.exp(output.float().reshape(-1)).cpu().numpy().astype(np.float64)

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        if len(truth) == 0:
            return {"mae": float("nan"), "exact": float("nan")}
        return {"mae": float(np.mean(np.abs(prediction - truth))), "exact": float(np.mean(np.round(prediction) ==
                                                                                             truth))}

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.full(n, self._mean)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mean": self._mean}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Task:
        task = super().from_schema(schema)
        task._mean = schema["mean"]
        return task


@register_task_kind
@dataclass
class ShiftTask(Task):
    """A 2-D displacement (dx, dy): targets (N, 2), mean squared error on standardised columns."""

    kind: ClassVar[str] = "shift"
    target_width: ClassVar[int] = 2
    summary_metrics: ClassVar[tuple[str, ...]] = ("distance",)
    higher_is_better: ClassVar[dict[str, bool]] = {"distance": False}
    _mean: tuple[float, float] = field(default=(0.0, 0.0), init=False, repr=False)
    _scale: float = field(default=1.0, init=False, repr=False)

    class Schema(TaskSchema):
        kind: Literal["shift"]
        mean: tuple[float, float] = (0.0, 0.0)
        scale: float = 1.0

    @property
    def out_features(self) -> int:
        return 2

    def labelled(self, values: np.ndarray) -> np.ndarray:
        """A case counts when both columns are given."""
        return ~np.isnan(np.asarray(values, np.float64)).any(axis=1)

    def fit(self, values: np.ndarray) -> None:
        labelled = values[self.labelled(values)]
        if len(labelled):
            self._mean = (float(labelled[:, 0].mean()), float(labelled[:, 1].mean()))
            self._scale = float(labelled.std()) or 1.0

    def encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.labelled(values)
        scaled = np.where(mask[:, None], (values - np.array(self._mean)) / self._scale, 0.0)
        return torch.from_numpy(scaled.astype(np.float32)), torch.from_numpy(mask)

    def loss(self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = torch.where(mask[:, None], target, torch.zeros_like(target))
        return masked_mean(((output.float() - target) ** 2).sum(dim=1), mask)

    def decode(self, output: torch.Tensor) -> np.ndarray:
        return output.float().cpu().numpy().astype(np.float64) * self._scale + np.array(self._mean)

    def score(self, truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        error = np.asarray(prediction) - np.asarray(truth)
        return {"distance": float(np.hypot(error[:, 0], error[:, 1]).mean()) if len(error) else float("nan")}

    def baseline_prediction(self, n: int) -> np.ndarray:
        return np.tile(np.array(self._mean), (n, 1))

    def components(self, values: np.ndarray, prediction: np.ndarray) -> dict[str, dict[str, Any]]:
        keep = self.labelled(values)
        truth, pred, base = values[keep], np.asarray(prediction)[keep], self.baseline_prediction(int(keep.sum()))
        return {f"{self.name}_{axis}": {"kind": "regression", "unit": self.unit, "n": int(keep.sum()),
                                        "part_of": self.name,
                                        "metrics": regression_errors(truth[:, col], pred[:, col]),
                                        "baseline": regression_errors(truth[:, col], base[:, col])}
                for col, axis in enumerate(("dx", "dy"))}

    def table_columns(self, values: np.ndarray, which: str) -> dict[str, list]:
        values = np.asarray(values, np.float64)
        return {f"{self.name}_{axis}_{which}": [None if np.isnan(v) else float(v) for v in values[:, col]]
                for col, axis in enumerate(("dx", "dy"))}

    def from_table(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        return np.stack([pd.to_numeric(frame[f"{self.name}_{axis}_{which}"], errors="coerce").to_numpy(np.float64)
                         for axis in ("dx", "dy")], axis=1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mean": list(self._mean), "scale": self._scale}

    @classmethod
    def from_schema(cls, schema: dict[str, Any]) -> Task:
        task = super().from_schema(schema)
        task._mean, task._scale = tuple(schema["mean"]), schema["scale"]
        return task


class KindsOptions(BaseModel):
    """Size of the synthetic data set."""

    model_config = ConfigDict(extra="forbid")
    n: int = 48
    size: int = 32
    seed: int = 0


class KindsPlugin(Plugin):
    """Grey images with 0-3 bright blobs: how many (count), where the first one is (shift), how bright the
    background is (a bounded regression)."""

    name = "kinds_fixture"
    Options = KindsOptions

    def tasks(self) -> list[Task]:
        return [CountTask("blobs", unit="blobs"), ShiftTask("offset", unit="px"),
                RegressionTask("brightness", bounds=(0.0, 1.0))]

    def load_records(self, data_dir: Path) -> Records:
        table = pd.read_csv(Path(data_dir) / "labels.csv")
        return Records(ids=list(table["id"]), paths=[Path(data_dir) / f for f in table["file"]],
                       targets={"blobs": table["blobs"].to_numpy(np.float64),
                                "offset": table[["dx", "dy"]].to_numpy(np.float64),
                                "brightness": table["brightness"].to_numpy(np.float64)},
                       strata={"crowded": np.where(table["blobs"] >= 2, "yes", "no")})

    def synthetic_data(self, out_dir: Path, **options: Any) -> Path:
        from PIL import Image

        o, out = self.options, Path(out_dir)
        rng = np.random.default_rng(o.seed)
        (out / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(o.n):
            background, count = rng.uniform(0.1, 0.4), int(rng.integers(0, 4))
            pixels = np.full((o.size, o.size), background)
            corners = rng.integers(0, o.size - 6, (count, 2))
            for x, y in corners:
                pixels[y:y + 6, x:x + 6] = 0.95
            dx, dy = (corners[0] + 3 - o.size / 2) if count else (np.nan, np.nan)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(out / "images" / f"case{i:03d}.png")
            rows.append({"id": f"case{i:03d}", "file": f"images/case{i:03d}.png", "blobs": count, "dx": dx,
                         "dy": dy, "brightness": round(background, 4)})
        pd.DataFrame(rows).to_csv(out / "labels.csv", index=False)
        return out
