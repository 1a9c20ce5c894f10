"""Training: losses and their weighting, the trainer, its state and checkpoints."""

from __future__ import annotations

from . import methods  # noqa: F401  (registers the gradient-level and stochastic methods in WEIGHTINGS)
from .checkpoint import RunCheckpoints, open_run_checkpoints, reading_checkpoints, training_key
from .gradients import Combination, GradientWeighting
from .losses import WEIGHTINGS, LossComposer, LossOutput, Weighting
from .state import History, LoopState, TrainingCheckpoint
from .trainer import Trainer, TrainSettings, pick_device

__all__ = [
    "Combination", "GradientWeighting", "History", "LoopState",
    "LossComposer", "LossOutput", "RunCheckpoints", "TrainSettings", "Trainer",
    "TrainingCheckpoint", "WEIGHTINGS", "Weighting", "open_run_checkpoints", "pick_device",
    "reading_checkpoints", "training_key"
]
