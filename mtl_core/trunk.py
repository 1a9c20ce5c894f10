"""The residual shared trunk of Res-MTNet: ``fc1 -> ReLU -> Dropout`` then residual blocks ``y = F(x) + x``."""

from __future__ import annotations

import torch
from torch import nn

from .errors import MTLError

_NORMS = ("none", "batch", "layer")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class ResidualBlock(nn.Module):
    """``y = F(x) + x`` with ``F = Linear -> Norm -> ReLU -> Dropout -> Linear``; without the skip when
    ``residual`` is false (the ablation)."""

    def __init__(self, width: int, dropout: float, norm: str, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(nn.Linear(width, width), _norm(norm, width), nn.ReLU(), nn.Dropout(dropout),
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
        self.fc1 = nn.Sequential(nn.Dropout(input_dropout), nn.Linear(in_features, hidden), _norm(norm, hidden),
                                 nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, dropout, norm, residual) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, hidden)."""
        return self.blocks(self.fc1(x))
