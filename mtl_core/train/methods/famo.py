"""FAMO: fast adaptive multitask optimisation (Liu, Liu, Stone and Liu, NeurIPS 2023)."""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ...tasks import Task
from ..losses import WEIGHTINGS, Weighting


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    """FAMO (Liu et al. 2023, Alg. 1): descends ``sum_t z_t log L_t`` with ``z = softmax(xi)``, i.e. loss weights
    ``z_t / (c L_t)`` with ``c = sum_t z_t / L_t``, which balances the tasks' rates of log-loss decrease in O(1)
    space and time (no per-task gradients). The logits ``xi`` learn from the observed decrease
    ``delta_t = log L_t(previous step) - log L_t(now)``: their gradient is ``J_softmax^T delta`` (eq. 9), taken
    with Adam (lr ``lr``, weight decay ``gamma``), as in the authors' code.

    Deviation: the paper measures the decrease on the same batch after the update (a second forward pass); here
    it is measured against the next training batch, which costs nothing. Tasks unlabelled in either batch take
    no part in that update. Validation losses weigh every task 1.

    Args:
        lr: the logits' learning rate (0.025 in the paper).
        gamma: their weight decay (1e-3).
    """

    def __init__(self, tasks: list[Task], lr: float = 0.025, gamma: float = 1e-3) -> None:
        super().__init__(tasks)
        if lr <= 0 or gamma < 0:
            raise ConfigError(f"FAMO needs lr > 0 and gamma >= 0, got lr={lr}, gamma={gamma}")
        self.lr, self.gamma = lr, gamma
        t = len(tasks)
        for name in ("logits", "adam_m", "adam_v"):
            self.register_buffer(name, torch.zeros(t, dtype=torch.float64))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.float64))
        self.register_buffer("previous", torch.full((t,), float("nan"), dtype=torch.float64))

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not torch.is_grad_enabled():
            return {n: torch.tensor(1.0) for n in losses}
        device = self.logits.device  # the buffers' (the composer's) device
        index = torch.tensor([self.names.index(n) for n in losses], device=device)
        now = torch.stack([v.detach().double().to(device) for v in losses.values()]).clamp(min=1e-8)
        self._learn(index, now)
        self.previous[index] = now
        z = torch.softmax(self.logits[index], dim=0)
        c = (z / now).sum()
        return {n: (z[i] / (c * now[i])).float() for i, n in enumerate(losses)}

    def _learn(self, index: torch.Tensor, now: torch.Tensor) -> None:
        """One Adam step of the logits from the decrease of the tasks seen in the previous and this batch."""
        before = self.previous[index]
        seen = ~before.isnan()
        if int(seen.sum()) < 2:
            return
        part = index[seen]
        delta = before[seen].log() - now[seen].log()
        z = torch.softmax(self.logits[part], dim=0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits[part]  # J_softmax^T delta + decay
        self.adam_step += 1
        step = float(self.adam_step)
        m = 0.9 * self.adam_m[part] + 0.1 * grad
        v = 0.999 * self.adam_v[part] + 0.001 * grad ** 2
        self.adam_m[part], self.adam_v[part] = m, v
        update = self.lr * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
        self.logits[part] = self.logits[part] - update
