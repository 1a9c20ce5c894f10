"""PCGrad: gradient surgery (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020)."""

from __future__ import annotations

import torch

from ...tasks import Task
from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS
from ._common import SeededGenerator


@WEIGHTINGS.register("pcgrad")
class PCGrad(GradientWeighting):
    """Projecting Conflicting Gradients (Yu et al. 2020, Alg. 1).

    Each task's gradient ``g_i`` is visited against the others in a random order; where it conflicts with
    ``g_j`` (``g_i . g_j < 0``) its component along ``g_j`` is removed:
    ``g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j``. The direction is the sum of the projected gradients.
    """

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.rng = SeededGenerator()

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        projected = grads.clone()
        squares = (grads * grads).sum(dim=1)  # (T,)
        for i in range(len(grads)):
            for j in self.rng.permutation(len(grads)):
                if j == i:
                    continue
                dot = projected[i] @ grads[j]
                if dot < 0:
                    projected[i] -= dot / squares[j] * grads[j]
        return Combination(projected.sum(dim=0), torch.ones(len(grads)))


@WEIGHTINGS.register("pcgrad_rep")
class PCGradRep(PCGrad):
    """PCGrad on the gradients of the shared representation (the cheap variant)."""

    level = "rep"
