"""The residual shared trunk of Res-MTNet: ``fc1 -> ReLU -> Dropout`` then residual blocks ``y = F(x) + x``."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MTLError

_NORMS = ("none", "batch", "layer")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class Dropout(nn.Dropout):
    """``nn.Dropout``, drawn faster on the CPU: there torch's ``bernoulli_`` costs more than twice a uniform draw
    and a select (a 32 x 19,072 batch of fused features: 9.6 ms against 3.9 ms on a 2-core CPU, a tenth of a
    training step). The same distribution (each value kept with probability 1 - p and scaled by 1 / (1 - p)),
    other random numbers; on other devices torch's own kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...)."""
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x.where(torch.rand_like(x) >= self.p, 0.0).mul_(1.0 / (1.0 - self.p))


class ResidualBlock(nn.Module):
    """``y = F(x) + x`` with ``F = Linear -> Norm -> ReLU -> Dropout -> Linear``; without the skip when
    ``residual`` is false (the ablation)."""

    def __init__(self, width: int, dropout: float, norm: str, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(nn.Linear(width, width), _norm(norm, width), nn.ReLU(), Dropout(dropout),
                                  nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W) -> (B, W)."""
        return self.body(x) + x if self.residual else self.body(x)


class ResidualSharedTrunk(nn.Module):
    """Shared layers of all tasks: ``fc1`` (in -> hidden), ReLU, Dropout, then ``depth`` residual blocks.

    Example:
        >>> trunk = ResidualSharedTrunk(in_features=64, hidden=32, depth=2)
        >>> trunk(torch.zeros(4, 64)).shape
        torch.Size([4, 32])
    """

    def __init__(self, in_features: int, hidden: int = 512, depth: int = 2, dropout: float = 0.3,
                 norm: str = "none", residual: bool = True, input_dropout: float = 0.0) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise MTLError(f"unknown trunk norm {norm!r}; use one of {', '.join(_NORMS)}")
        if in_features < 1 or hidden < 1 or depth < 0 or not 0 <= dropout < 1 or not 0 <= input_dropout < 1:
            raise MTLError(f"invalid trunk: in_features={in_features}, hidden={hidden}, depth={depth}, "
                           f"dropout={dropout}; need widths >= 1, depth >= 0, dropouts in [0, 1)")
        self.out_features = hidden
        #: the settings it was built with (the trunk section of model.json for a model saved from Python)
        self.settings = {"hidden": hidden, "depth": depth, "dropout": dropout, "input_dropout": input_dropout,
                         "norm": norm, "residual": residual}
        self.fc1 = nn.Sequential(Dropout(input_dropout), nn.Linear(in_features, hidden), _norm(norm, hidden),
                                 nn.ReLU(), Dropout(dropout))
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, dropout, norm, residual) for _ in range(depth)))
        self.in_features = in_features
        #: the output of the last training forward: the representation the "rep" gradient methods differentiate
        self.last_shared: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, hidden)."""
        out = self.blocks(self.fc1(x))
        self.last_shared = out if torch.is_grad_enabled() and self.training else None
        return out

    def __getstate__(self) -> dict:
        # a pickled or deep-copied trunk leaves the last step's graph behind
        return {**self.__dict__, "last_shared": None}
