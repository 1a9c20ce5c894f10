"""The network on top of the features: the residual shared trunk and the multi-task model."""

from __future__ import annotations

from .network import MultiTaskModel, create_model
from .trunk import ResidualSharedTrunk

__all__ = ["MultiTaskModel", "ResidualSharedTrunk", "create_model"]
