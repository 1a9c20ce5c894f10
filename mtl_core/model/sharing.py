"""Sharing architectures over the fused features, chosen by name (``model.trunk.architecture``).

``residual`` is hard parameter sharing (one :class:`ResidualSharedTrunk` for all tasks, the default); ``mmoe``
and ``adapters`` give each task its own view of shared parts. Every trunk has ``in_features``,
``out_features``, ``settings`` (what it was built with), ``last_shared`` (the representation the "rep" gradient
methods differentiate, set by a training forward) and ``task_parameters()`` (the parts that belong to one task,
which take only that task's gradient). A multi-output trunk returns ``{task: (B, out_features)}``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from ..errors import ConfigError, MTLError
from ..registry import Registry
from .trunk import Dropout, ResidualBlock, ResidualSharedTrunk, _norm

ARCHITECTURES: Registry[type[nn.Module]] = Registry("sharing architecture", ConfigError)
ARCHITECTURES.register("residual")(ResidualSharedTrunk)


def _forget_graph(module: nn.Module) -> dict:
    """A trunk's pickled / deep-copied state without the last step's graph."""
    return {**module.__dict__, "last_shared": None}


@ARCHITECTURES.register("mmoe")
class MultiGateMixtureOfExperts(nn.Module):
    """Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong and Chi, KDD 2018): ``experts`` expert networks
    and one softmax gate per task; task t reads ``sum_k g_t(x)_k E_k(x)``.

    Over cached features the fused vector is wide (tens of thousands of values), so the experts share the input
    projection ``fc1`` (in -> hidden, as in the residual trunk) and each expert is ``depth`` residual blocks on
    it (at least one); the gates read the same projection. The shared representation (for the "rep" methods) is
    the experts' outputs (B, experts, hidden); the gates are task parameters.

    Example:
        >>> trunk = MultiGateMixtureOfExperts(64, ["a", "b"], hidden=16, experts=3)
        >>> {k: v.shape for k, v in trunk(torch.zeros(2, 64)).items()}
        {'a': torch.Size([2, 16]), 'b': torch.Size([2, 16])}
    """

    def __init__(self, in_features: int, tasks: list[str], hidden: int = 512, depth: int = 2, dropout: float = 0.3,
                 norm: str = "none", residual: bool = True, input_dropout: float = 0.0, experts: int = 4) -> None:
        super().__init__()
        if experts < 1 or not tasks:
            raise MTLError(f"an MMoE trunk needs experts >= 1 and tasks, got {experts} experts for {tasks}")
        base = ResidualSharedTrunk(in_features, hidden, 0, dropout, norm, residual, input_dropout)  # fc1 only
        self.in_features, self.out_features = in_features, hidden
        self.settings = {**base.settings, "depth": depth, "architecture": "mmoe", "experts": experts}
        self.fc1 = base.fc1
        self.experts = nn.ModuleList(nn.Sequential(*(ResidualBlock(hidden, dropout, norm, residual)
                                                     for _ in range(max(depth, 1)))) for _ in range(experts))
        self.gates = nn.ModuleDict({t: nn.Linear(hidden, experts) for t in tasks})
        self.last_shared: torch.Tensor | None = None

    def task_parameters(self) -> list[nn.Parameter]:
        """The gates: each belongs to its task."""
        return list(self.gates.parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in_features) -> {task: (B, hidden)}."""
        h = self.fc1(x)  # (B, hidden)
        experts = torch.stack([e(h) for e in self.experts], dim=1)  # (B, K, hidden)
        self.last_shared = experts if torch.is_grad_enabled() and self.training else None
        return {t: (torch.softmax(gate(h), dim=1).unsqueeze(2) * experts).sum(dim=1) for t, gate in self.gates.items()}

    __getstate__ = _forget_graph


class Adapter(nn.Module):
    """A residual bottleneck ``z + W_2 ReLU(W_1 Norm(z))`` whose last layer starts at zero (identity at first)."""

    def __init__(self, width: int, bottleneck: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(norm, width), nn.Linear(width, bottleneck), nn.ReLU(),
                                  nn.Linear(bottleneck, width))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, W) -> (B, W)."""
        return z + self.body(z)


@ARCHITECTURES.register("adapters")
class TaskAdapterTrunk(nn.Module):
    """The residual shared trunk followed by one residual adapter per task (Rebuffi, Bilen and Vedaldi,
    "Learning multiple visual domains with residual adapters", NeurIPS 2017; bottleneck form of Houlsby et al.,
    ICML 2019): soft, cheap task-specific capacity on top of hard sharing. Adapters start as the identity, so
    training starts from the residual trunk. The shared representation is the trunk's output.

    Example:
        >>> trunk = TaskAdapterTrunk(64, ["a", "b"], hidden=16, adapter_width=4)
        >>> sorted(trunk(torch.zeros(2, 64)))
        ['a', 'b']
    """

    def __init__(self, in_features: int, tasks: list[str], hidden: int = 512, depth: int = 2, dropout: float = 0.3,
                 norm: str = "none", residual: bool = True, input_dropout: float = 0.0,
                 adapter_width: int = 64) -> None:
        super().__init__()
        if adapter_width < 1 or not tasks:
            raise MTLError(f"adapters need adapter_width >= 1 and tasks, got {adapter_width} for {tasks}")
        self.shared = ResidualSharedTrunk(in_features, hidden, depth, dropout, norm, residual, input_dropout)
        self.in_features, self.out_features = in_features, hidden
        self.settings = {**self.shared.settings, "architecture": "adapters", "adapter_width": adapter_width}
        self.adapters = nn.ModuleDict({t: Adapter(hidden, adapter_width, norm) for t in tasks})
        self.dropout = Dropout(dropout)
        self.last_shared: torch.Tensor | None = None

    def task_parameters(self) -> list[nn.Parameter]:
        """The adapters: each belongs to its task."""
        return list(self.adapters.parameters())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, in_features) -> {task: (B, hidden)}."""
        z = self.shared(x)  # (B, hidden)
        self.last_shared, self.shared.last_shared = self.shared.last_shared, None
        return {t: self.dropout(adapter(z)) for t, adapter in self.adapters.items()}

    __getstate__ = _forget_graph


def create_trunk(in_features: int, tasks: list[str], options: dict) -> nn.Module:
    """The trunk ``options["architecture"]`` names (``residual`` when absent) with the options it takes; options of
    other architectures (``experts`` for a residual trunk) are ignored, so one config section serves all."""
    options = dict(options)
    cls = ARCHITECTURES.get(options.pop("architecture", "residual"))
    accepted = inspect.signature(cls.__init__).parameters
    kept = {k: v for k, v in options.items() if k in accepted}
    return cls(in_features, **kept) if cls is ResidualSharedTrunk else cls(in_features, tasks, **kept)
