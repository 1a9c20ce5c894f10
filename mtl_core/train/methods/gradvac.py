"""GradVac: gradient vaccine (Wang, Tsvetkov, Firat and Cao, ICLR 2021)."""

from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...tasks import Task
from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS
from ._common import SeededGenerator


@WEIGHTINGS.register("gradvac")
class GradVac(GradientWeighting):
    """Gradient Vaccine (Wang et al. 2021, Alg. 2): each pair of tasks keeps an exponential moving average
    ``phi_hat_ij`` of the cosine similarity of their gradients; where the current similarity ``phi_ij`` falls
    below it, ``g_i`` is moved towards ``g_j`` until their cosine equals the target:
    ``g_i <- g_i + |g_i| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)) g_j``,
    then ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij``. With ``phi_hat = 0`` this is PCGrad's projection.

    Args:
        beta: the moving average's rate (1e-2 in the paper).
    """

    def __init__(self, tasks: list[Task], beta: float = 0.01) -> None:
        super().__init__(tasks)
        if not 0.0 < beta <= 1.0:
            raise ConfigError(f"GradVac's beta must be in (0, 1], got {beta}")
        self.beta = beta
        self.rng = SeededGenerator()
        self.register_buffer("target", torch.zeros(len(tasks), len(tasks), dtype=torch.float64))

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        index = [self.names.index(n) for n in names]
        g = grads.double()
        norms = g.norm(dim=1)
        adjusted = g.clone()
        for i in range(len(g)):
            for j in self.rng.permutation(len(g)):
                if j == i:
                    continue
                a, b = index[i], index[j]
                phi = float(adjusted[i] @ g[j] / (adjusted[i].norm() * norms[j]))
                goal = float(self.target[a, b])
                if phi < goal:
                    coef = float(adjusted[i].norm()) * (goal * math.sqrt(1 - phi ** 2) - phi * math.sqrt(1 - goal ** 2))
                    adjusted[i] += coef / (float(norms[j]) * math.sqrt(1 - goal ** 2)) * g[j]
                self.target[a, b] = (1 - self.beta) * goal + self.beta * phi
        return Combination(adjusted.sum(dim=0).to(grads.dtype), torch.ones(len(g)))
