"""Training: losses and their weighting, the trainer, checkpoints."""

from __future__ import annotations

from .checkpoint import open_run_checkpoints, training_key
from .losses import WEIGHTINGS, LossComposer, LossOutput, Weighting
from .trainer import History, Trainer, TrainSettings, pick_device

__all__ = [
    "History", "LossComposer", "LossOutput", "TrainSettings", "Trainer", "WEIGHTINGS", "Weighting",
    "open_run_checkpoints", "pick_device", "training_key"
]
