"""Small pieces the methods share: a seeded generator whose state is checkpointed, and the min-norm solver."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SeededGenerator(nn.Module):
    """A ``torch.Generator`` (seeded with ``seed``) whose state travels with ``state_dict``, so a resumed
    training draws the numbers an uninterrupted one would have drawn."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def permutation(self, n: int) -> list[int]:
        """A random order of ``range(n)``."""
        return torch.randperm(n, generator=self.generator).tolist()

    def normal(self, n: int) -> torch.Tensor:
        """``n`` standard normal draws (n,)."""
        return torch.randn(n, generator=self.generator)

    def get_extra_state(self) -> dict:
        return {"rng": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["rng"])


def gram(grads: torch.Tensor) -> np.ndarray:
    """Gram matrix ``G G^T`` (T, T) of per-task gradients (T, P), in float64."""
    g = grads.double()
    return (g @ g.T).cpu().numpy()


def min_norm_weights(gram_matrix: np.ndarray, iterations: int = 250, tol: float = 1e-10) -> np.ndarray:
    """Weights ``w`` on the simplex minimising ``|sum_t w_t g_t|^2 = w^T K w`` (Frank-Wolfe with exact line
    search, as in Sener & Koltun 2018, Alg. 2); two tasks are solved in closed form."""
    k = np.asarray(gram_matrix, dtype=np.float64)
    t = len(k)
    if t == 1:
        return np.ones(1)
    if t == 2:
        return _two_point(k[0, 0], k[0, 1], k[1, 1])
    w = np.full(t, 1.0 / t)
    for _ in range(iterations):
        i = int(np.argmin(k @ w))  # the vertex that most decreases w^T K w
        # the min-norm point on the segment between the current point and that vertex
        a, b, c = w @ k @ w, w @ k[:, i], k[i, i]
        gamma = _two_point(a, b, c)[1]
        step = gamma * (np.eye(t)[i] - w)
        w = w + step
        if np.abs(step).sum() < tol:
            break
    return w


def _two_point(aa: float, ab: float, bb: float) -> np.ndarray:
    """Weights (1 - g, g) of the min-norm point of the segment [a, b] given <a,a>, <a,b>, <b,b>."""
    denominator = aa - 2.0 * ab + bb
    gamma = 0.5 if denominator <= 0 else float(np.clip((aa - ab) / denominator, 0.0, 1.0))
    return np.array([1.0 - gamma, gamma])
