"""MGDA-UB: multi-task learning as multi-objective optimisation (Sener & Koltun, NeurIPS 2018)."""

from __future__ import annotations

import torch

from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS
from ._common import gram, min_norm_weights


@WEIGHTINGS.register("mgda")
class MGDA(GradientWeighting):
    """Multiple-gradient descent (Sener & Koltun 2018): the min-norm point of the convex hull of the per-task
    gradients of the shared parameters, ``d = sum_t w_t g_t`` with ``w = argmin_{w in simplex} |sum_t w_t
    g_t|^2``, a direction that decreases every task's loss (or zero at a Pareto-stationary point). Solved by
    Frank-Wolfe (the paper's Alg. 2), in closed form for two tasks. The weights sum to 1, as in the paper.
    """

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        w = torch.as_tensor(min_norm_weights(gram(grads)), dtype=grads.dtype, device=grads.device)
        return Combination(w @ grads, w.cpu())


@WEIGHTINGS.register("mgda_ub")
class MGDAUpperBound(MGDA):
    """MGDA-UB (Sener & Koltun 2018, Sec. 3.3): the same solver on the gradients of the shared representation,
    whose min-norm point bounds the parameter-level one from above; one backward pass instead of T."""

    level = "rep"
