"""Aligned-MTL: independent component alignment (Senushkin, Patakin, Kuznetsov and Konushin, CVPR 2023)."""

from __future__ import annotations

import torch

from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS


def aligned_weights(grads: torch.Tensor) -> torch.Tensor:
    """Weights (T,) of the aligned direction: with ``G G^T = V diag(lambda) V^T`` (rank r), the balance matrix
    ``B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T`` makes the stable system ``B G`` (all singular values equal
    to the smallest, eq. 8), and the direction ``1^T B G`` weighs task t by the column sum of ``B``."""
    g = grads.double()
    values, vectors = torch.linalg.eigh(g @ g.T)  # ascending
    keep = values > values.max() * len(values) * torch.finfo(torch.float64).eps
    values, vectors = values[keep], vectors[:, keep]
    balance = values.min().sqrt() * (vectors / values.sqrt()) @ vectors.T  # (T, T)
    return balance.sum(dim=0)


@WEIGHTINGS.register("aligned_mtl")
class AlignedMTL(GradientWeighting):
    """Aligned-MTL (Senushkin et al. 2023, Alg. 1): aligns the principal components of the per-task gradient
    matrix so that the condition number of the combined system is 1 (no dominating and no conflicting
    component), the scale set by the smallest singular value. For orthogonal gradients each task moves by its
    gradient rescaled to the smallest gradient norm.
    """

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        w = aligned_weights(grads)
        return Combination((w @ grads.double()).to(grads.dtype), w.float().cpu())


@WEIGHTINGS.register("aligned_mtl_ub")
class AlignedMTLUpperBound(AlignedMTL):
    """Aligned-MTL-UB (Senushkin et al. 2023, Sec. 4.2): the same on the gradients of the shared representation."""

    level = "rep"
