"""Training: losses and their weighting, the trainer, its state and checkpoints."""

from __future__ import annotations

from .checkpoint import RunCheckpoints, open_run_checkpoints, training_key
from .losses import WEIGHTINGS, LossComposer, LossOutput, Weighting
from .state import History, LoopState, TrainingCheckpoint
from .trainer import Trainer, TrainSettings, pick_device

__all__ = [
    "History", "LoopState", "LossComposer", "LossOutput", "RunCheckpoints", "TrainSettings", "Trainer",
    "TrainingCheckpoint", "WEIGHTINGS", "Weighting", "open_run_checkpoints", "pick_device", "training_key"
]
