"""The network on top of the features: the residual shared trunk and the multi-task model."""

from __future__ import annotations

from .network import MultiTaskModel, create_model
from .sharing import ARCHITECTURES, MultiGateMixtureOfExperts, TaskAdapterTrunk, create_trunk
from .trunk import ResidualSharedTrunk

__all__ = [
    "ARCHITECTURES", "MultiGateMixtureOfExperts", "MultiTaskModel", "ResidualSharedTrunk", "TaskAdapterTrunk",
    "create_model", "create_trunk",
]
