"""IMTL-G: impartial multi-task learning, the gradient part (Liu et al., ICLR 2021)."""

from __future__ import annotations

import torch

from ..gradients import Combination, GradientWeighting
from ..losses import WEIGHTINGS


@WEIGHTINGS.register("imtl")
class IMTL(GradientWeighting):
    """IMTL-G (Liu, Li, Kuang, Xue, Chen, Yang, Liao and Zhang 2021, eq. 11): the combination
    ``d = sum_t a_t g_t`` (``sum_t a_t = 1``) whose projections on every task's unit gradient ``u_t`` are equal,
    ``a_{2..T} = g_1 U^T (D U^T)^{-1}`` with rows ``D_t = g_1 - g_t`` and ``U_t = u_1 - u_t``.

    The loss-scale part (IMTL-L) learns a scale per task like ``uncertainty``; this is the gradient part alone.
    """

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        g = grads.double()
        if len(g) == 1:
            return Combination(grads[0], torch.ones(1))
        units = g / g.norm(dim=1, keepdim=True)
        d, u = g[:1] - g[1:], units[:1] - units[1:]  # (T - 1, P)
        rest = torch.linalg.lstsq((d @ u.T).T, (g[:1] @ u.T).T).solution.reshape(-1)  # a_2..T: a (D U^T) = g_1 U^T
        alpha = torch.cat([1.0 - rest.sum().reshape(1), rest])
        return Combination((alpha @ g).to(grads.dtype), alpha.float().cpu())


@WEIGHTINGS.register("imtl_rep")
class IMTLRep(IMTL):
    """IMTL-G on the gradients of the shared representation (the paper applies it there, Sec. 3.3)."""

    level = "rep"
