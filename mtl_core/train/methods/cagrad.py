"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021)."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError
from ...tasks import Task
from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS
from ._common import gram


def cagrad_weights(k: np.ndarray, c: float) -> np.ndarray:
    """``argmin_{w in simplex} g_w . g_0 + c |g_0| |g_w|`` (the dual of the paper's eq. 2) from the Gram
    matrix ``k`` (T, T), with ``g_w = sum_t w_t g_t`` and ``g_0`` the mean gradient."""
    from scipy.optimize import minimize  # scipy is heavy: loaded with the first CAGrad step

    t = len(k)
    mean = np.full(t, 1.0 / t)
    g0_norm = float(np.sqrt(max(mean @ k @ mean, 0.0)))

    def objective(w: np.ndarray) -> float:
        return float(w @ k @ mean + c * g0_norm * np.sqrt(max(w @ k @ w, 0.0) + 1e-12))

    result = minimize(objective, mean, bounds=[(0.0, 1.0)] * t, method="SLSQP",
                      constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum()},), options={"ftol": 1e-12})
    return np.clip(result.x, 0.0, None) / max(np.clip(result.x, 0.0, None).sum(), 1e-12)


@WEIGHTINGS.register("cagrad")
class CAGrad(GradientWeighting):
    """Conflict-Averse Gradient descent (Liu, Liu, Jin, Stone and Liu 2021, Alg. 1).

    Maximises the worst local improvement of any task within a ball of radius ``c |g_0|`` around the mean
    gradient ``g_0``: with ``w`` from :func:`cagrad_weights`, ``d = (g_0 + c |g_0| / |g_w| g_w) / (1 + c^2)``
    (the authors' rescaling). ``c = 0`` is plain gradient descent on the mean loss.

    Args:
        c: the radius ``c`` in [0, 1) (0.4 in the paper's experiments; 0.5 by default in LibMTL).
    """

    def __init__(self, tasks: list[Task], c: float = 0.4) -> None:
        super().__init__(tasks)
        if not 0.0 <= c < 1.0:
            raise ConfigError(f"CAGrad's c must be in [0, 1), got {c}")
        self.c = c

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        k = gram(grads)
        w = torch.as_tensor(cagrad_weights(k, self.c), dtype=grads.dtype, device=grads.device)
        g0, gw = grads.mean(dim=0), w @ grads
        g0_norm = float(torch.sqrt(torch.as_tensor(k.mean())))
        direction = (g0 + self.c * g0_norm / (float(gw.norm()) + 1e-12) * gw) / (1.0 + self.c ** 2)
        effective = (1.0 / len(grads) + self.c * g0_norm / (float(gw.norm()) + 1e-12) * w) / (1.0 + self.c ** 2)
        return Combination(direction, effective.cpu())
