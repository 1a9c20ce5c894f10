"""Weighted-loss composition: ``total = sum_t lambda_t * L_t`` (the paper's eq. 8) with pluggable weightings.

A weighting strategy is a small ``nn.Module`` in :data:`WEIGHTINGS`: given the per-task losses it returns the
weights. It never calls ``backward`` itself; the trainer does. Methods that combine per-task gradients instead
(PCGrad, MGDA, Nash-MTL, ...) share this registry: :mod:`.gradients`, one module each in :mod:`.methods`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from ..tasks import Task

WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting strategy", ConfigError)


@dataclass(frozen=True)
class LossOutput:
    """Result of :meth:`LossComposer.__call__`: the total, each task's unweighted loss, and the weights used."""

    total: torch.Tensor
    per_task: dict[str, torch.Tensor]
    weights: dict[str, float]


class Weighting(nn.Module):
    """Base of the weighting strategies. ``regulariser`` is added to the total (zero for most)."""

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__()
        self.names = [t.name for t in tasks]

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-task losses -> per-task weights (tensors, possibly with gradients)."""
        raise NotImplementedError

    def regulariser(self) -> torch.Tensor:
        """Extra term of the total loss."""
        return torch.zeros(())

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        """Called once per epoch with the mean training loss of each task."""


@WEIGHTINGS.register("static")
class StaticWeighting(Weighting):
    """Fixed weights lambda_t from each task's ``weight`` (the paper's eq. 8)."""

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.fixed = {t.name: float(t.weight) for t in tasks}

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: torch.tensor(self.fixed[n]) for n in losses}


@WEIGHTINGS.register("equal")
class EqualWeighting(Weighting):
    """Every task weighs 1 (the "equal loss weights" ablation)."""

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: torch.tensor(1.0) for n in losses}


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    ``total = sum_t exp(-s_t) * L_t + s_t`` with learnable ``s_t = log sigma_t^2``.
    """

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(tasks)))
        self._used: list[int] = []

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._used = [self.names.index(n) for n in losses]
        return {n: torch.exp(-self.log_vars[self.names.index(n)]) for n in losses}

    def regulariser(self) -> torch.Tensor:
        return self.log_vars[self._used].sum() if self._used else torch.zeros(())


@WEIGHTINGS.register("dwa")
class DynamicWeightAveraging(Weighting):
    """Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019): weights follow each task's rate of descent.

    ``lambda_t = T * softmax_t(r_t / temperature)`` with ``r_t = L_t(e-1) / L_t(e-2)``; equal for two epochs.
    """

    def __init__(self, tasks: list[Task], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = temperature
        self.history: list[dict[str, float]] = []
        self.current = {n: 1.0 for n in self.names}

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: torch.tensor(self.current[n]) for n in losses}

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        self.history = (self.history + [mean_losses])[-2:]
        if len(self.history) < 2:
            return
        prev, last = self.history
        ratios = {n: last[n] / prev[n] if prev.get(n) else 1.0 for n in self.names if n in last}
        exps = {n: math.exp(r / self.temperature) for n, r in ratios.items()}
        total = sum(exps.values())
        self.current = {n: len(exps) * e / total for n, e in exps.items()}

    def get_extra_state(self) -> dict:
        return {"history": self.history, "current": self.current}

    def set_extra_state(self, state: dict) -> None:
        self.history, self.current = state["history"], state["current"]


class LossComposer(nn.Module):
    """Computes every task's masked loss and combines them with a weighting strategy.

    Example:
        >>> from mtl_core import RegressionTask
        >>> composer = LossComposer([RegressionTask("size", weight=2.0)], strategy="static")
        >>> out = composer({"size": torch.zeros(2, 1)}, {"size": torch.ones(2)}, {"size": torch.tensor([True, False])})
        >>> float(out.total), out.weights
        (2.0, {'size': 2.0})
    """

    def __init__(self, tasks: list[Task], strategy: str = "static", **options: float) -> None:
        super().__init__()
        self.tasks = {t.name: t for t in tasks}
        self.strategy = strategy
        self.weighting = WEIGHTINGS.get(strategy)(tasks, **options)

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                masks: dict[str, torch.Tensor], scales: dict[str, float] | None = None) -> LossOutput:
        """Outputs {task: (B, K)}, targets {task: (B,)}, masks {task: (B,) bool} -> :class:`LossOutput`.

        ``scales``: per-task factors of the weighted losses in the total (a distributed run: this process's share
        of the global batch's labels, :meth:`~mtl_core.distributed.Parallel.loss_scales`); ``per_task`` is unscaled.
        """
        per_task = {n: t.loss(outputs[n], targets[n], masks[n]) for n, t in self.tasks.items()}
        # Only tasks with labels in this batch are weighted: an unlabelled task must not move a learned weight.
        present = {n: loss for n, loss in per_task.items() if bool(masks[n].any())}
        device = next(iter(per_task.values())).device
        total = sum(per_task.values()) * 0.0  # zero, but part of the graph so backward() still works
        weights: dict[str, float] = {n: 0.0 for n in per_task}
        if present:
            learned = self.weighting(present)
            scale = scales or {}
            total = sum(learned[n].to(device) * present[n] * scale.get(n, 1.0) for n in present) \
                + self.weighting.regulariser().to(device)
            weights.update({n: float(w.detach()) for n, w in learned.items()})
        return LossOutput(total=total, per_task=per_task, weights=weights)
