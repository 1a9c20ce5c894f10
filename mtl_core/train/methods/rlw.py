"""RLW: random loss weighting (Lin, Ye, Xu, Shi and Zhang, TMLR 2022)."""

from __future__ import annotations

import torch

from ...tasks import Task
from ..losses import WEIGHTINGS, Weighting
from ._common import SeededGenerator


@WEIGHTINGS.register("rlw")
class RandomLossWeighting(Weighting):
    """Random Loss Weighting (Lin et al. 2022): every training step draws ``lambda = T softmax(z)``, ``z ~ N(0,
    I)``, over the T tasks labelled in the batch (the weights sum to T, so the loss keeps the scale of equal
    weights). A loss-level method: no per-task gradients. Validation losses weigh every task 1.
    """

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.rng = SeededGenerator()

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not torch.is_grad_enabled():  # evaluation: no draw, so validation does not move the random stream
            return {n: torch.tensor(1.0) for n in losses}
        weights = len(losses) * torch.softmax(self.rng.normal(len(losses)), dim=0)
        return dict(zip(losses, weights, strict=True))
