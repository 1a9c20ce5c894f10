"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022)."""

from __future__ import annotations

import numpy as np
import torch

from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS
from ._common import gram


def nash_weights(k: np.ndarray, iterations: int = 50, tol: float = 1e-10) -> np.ndarray:
    """The positive solution of ``K a = 1 / a`` (elementwise) for the Gram matrix ``K`` (T, T): the
    minimiser of the strictly convex ``a^T K a / 2 - sum_t log a_t``, found by damped Newton steps on the
    normalised matrix (a small ridge keeps collinear gradients solvable), then scaled back."""
    k = np.asarray(k, dtype=np.float64)
    scale = float(np.linalg.norm(k)) or 1.0
    kn = k / scale + 1e-6 * np.eye(len(k))
    a = np.ones(len(k))

    def value(x: np.ndarray) -> float:
        return float(0.5 * x @ kn @ x - np.log(x).sum())

    for _ in range(iterations):
        grad = kn @ a - 1.0 / a
        if np.abs(grad).max() < tol:
            break
        step = np.linalg.solve(kn + np.diag(1.0 / a ** 2), grad)
        size = 1.0
        while np.any(a - size * step <= 0) or value(a - size * step) > value(a) - 1e-4 * size * grad @ step:
            size *= 0.5
            if size < 1e-12:
                break
        a = a - size * step
    return a / np.sqrt(scale)


@WEIGHTINGS.register("nash_mtl")
class NashMTL(GradientWeighting):
    """Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik and Fetaya 2022): the Nash bargaining
    solution ``d = sum_t a_t g_t`` with ``G G^T a = 1 / a``, so that every task's improvement ``g_t . d`` is
    ``1 / a_t`` (eq. 4 / Claim 3.2). The paper approximates ``a`` by a sequence of convex programs (cvxpy);
    here it is the exact minimiser of an equivalent convex function (:func:`nash_weights`). For orthogonal
    gradients ``a_t = 1 / |g_t|``: every task moves by its unit gradient.
    """

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        a = torch.as_tensor(nash_weights(gram(grads)), dtype=grads.dtype, device=grads.device)
        return Combination(a @ grads, a.cpu())


@WEIGHTINGS.register("nash_mtl_rep")
class NashMTLRep(NashMTL):
    """Nash-MTL on the gradients of the shared representation (the cheap variant)."""

    level = "rep"
