"""GradNorm: gradient normalisation (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018)."""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ...tasks import Task
from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS


@WEIGHTINGS.register("gradnorm")
class GradNorm(GradientWeighting):
    """GradNorm (Chen et al. 2018): learnable loss weights ``w_t`` whose weighted gradient norms
    ``G_t = w_t |g_t|`` are pulled towards a common target ``mean(G) r_t^alpha``, where ``r_t`` is task t's
    relative inverse training rate ``(L_t / L_t(0)) / mean(L / L(0))``: a task that trains slowly gets a larger
    gradient. The weights descend ``L_grad = sum_t |G_t - target_t|`` (target held constant, eq. 2), whose
    derivative is ``sign(G_t - target_t) |g_t|``; the step is divided by the mean gradient norm so that it does
    not depend on the losses' scale (the paper uses the network's optimiser), and the weights are renormalised
    to keep their sum (T when every task is labelled). The direction is ``sum_t w_t g_t``.

    Args:
        alpha: the restoring force's asymmetry (1.5 in the paper).
        lr: the weights' step size.
    """

    def __init__(self, tasks: list[Task], alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__(tasks)
        if alpha < 0 or lr <= 0:
            raise ConfigError(f"GradNorm needs alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha, self.lr = alpha, lr
        self.register_buffer("task_weights", torch.ones(len(tasks), dtype=torch.float64))
        self.register_buffer("initial_losses", torch.full((len(tasks),), float("nan"), dtype=torch.float64))

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        device = self.task_weights.device  # the buffers' (the composer's) device
        index = torch.tensor([self.names.index(n) for n in names], device=device)
        losses = losses.double().to(device)
        first = self.initial_losses[index]
        self.initial_losses[index] = torch.where(first.isnan(), losses, first)
        w = self.task_weights[index].clone()
        direction = w.to(grads) @ grads
        self.task_weights[index] = self.updated_weights(w, grads.double().norm(dim=1).to(device),
                                                        losses / self.initial_losses[index])
        return Combination(direction, w.float().cpu())

    def updated_weights(self, w: torch.Tensor, norms: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
        """One GradNorm step on the weights ``w`` (T,) given the gradient norms ``|g_t|`` and ``L_t / L_t(0)``."""
        weighted = w * norms  # G_t
        target = weighted.mean() * (ratios / ratios.mean().clamp(min=1e-12)) ** self.alpha
        step = torch.sign(weighted - target) * norms / norms.mean().clamp(min=1e-12)
        new = (w - self.lr * step).clamp(min=1e-3)
        return new * (w.sum() / new.sum())
