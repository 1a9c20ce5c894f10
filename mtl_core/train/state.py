"""Where a training stands, and its checkpoint: what :class:`~mtl_core.train.trainer.Trainer` saves after every
epoch and reads back to continue an interrupted training bit for bit.

A checkpoint (see :mod:`~mtl_core.train.checkpoint` for the file format) holds the model, optimiser, loss weighting
and gradient-scaler states, the RNG states, the early-stopping state and the history, and refers to the best
weights so far: the model's own after an improving epoch, else a side file written once when they stop being the
model's.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from ..model import MultiTaskModel
from .checkpoint import (
    best_file,
    checkpoint_file,
    drop_side_files,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from .losses import LossComposer

log = logging.getLogger(__name__)


@dataclass
class History:
    """Per-epoch losses: ``train`` / ``val`` hold {"total": .., task: ..} dicts; ``weights`` the loss weights."""

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    weights: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1

    def to_json(self) -> dict[str, Any]:
        """The history as JSON values (what a checkpoint and ``history.json`` hold)."""
        return {"train": self.train, "val": self.val, "weights": self.weights, "best_epoch": self.best_epoch}

    @classmethod
    def from_json(cls, h: dict[str, Any]) -> History:
        """The inverse of :meth:`to_json`."""
        return cls(list(h["train"]), list(h["val"]), list(h["weights"]), int(h["best_epoch"]))


@dataclass
class LoopState:
    """Where a training stands: what a checkpoint saves besides the tensors (mutated epoch by epoch)."""

    history: History = field(default_factory=History)
    epoch: int = 0  # epochs completed
    stopped: bool = False  # early stopping ended the training
    best: float = float("inf")
    waited: int = 0
    best_state: dict[str, Any] | None = None


class TrainingCheckpoint:
    """The checkpoint file of one training, for the model, loss composer and gradient scaler a trainer fits.

    Args:
        path: The checkpoint file (it need not exist yet).
        model, composer, scaler: What is saved and restored (in place).
        settings: The training settings a resumed training must share (the device excluded: another may resume).
    """

    def __init__(self, path: Path, model: MultiTaskModel, composer: LossComposer, scaler: torch.amp.GradScaler,
                 settings: dict[str, Any]) -> None:
        self.path, self.model, self.composer, self.scaler = Path(path), model, composer, scaler
        self.settings = dict(settings)
        self._best_saved = -1  # epoch whose best weights the side file holds

    def restore(self, optimiser: torch.optim.Optimizer, generator: torch.Generator) -> LoopState:
        """Continue from the checkpoint (or the copy a killed save left aside): the model, composer, scaler,
        ``optimiser`` and RNG states are put back; a fresh state when there is no checkpoint.

        Raises:
            RunError: the checkpoint is corrupt, or was written for another model or other settings.
        """
        found = checkpoint_file(self.path)
        if found is None:
            return LoopState()
        state = load_checkpoint(found)
        self._check_settings(state, found)
        self._load_tensors(state, optimiser, found)
        restore_rng(state["rng"], generator)
        loop = LoopState(History.from_json(json.loads(state["history"])), int(state["epoch"]), bool(state["stopped"]),
                         float(state["best"]), int(state["waited"]))
        loop.best_state = self._best_weights(state)
        log.info("resuming training from %s after epoch %d", found, loop.epoch)
        return loop

    def _check_settings(self, state: dict[str, Any], found: Path) -> None:
        mine = self.settings | {"strategy": self.composer.strategy}
        theirs = dict(state.get("settings", {})) | {"strategy": state.get("strategy")}
        changed = [k for k in mine if mine[k] != theirs.get(k)]
        if changed:
            raise RunError(f"checkpoint {found} was made with other training settings ({changed[0]}: "
                           f"{theirs.get(changed[0])!r} there, {mine[changed[0]]!r} now); use the same settings, "
                           f"or delete it to start that training over")

    def _load_tensors(self, state: dict[str, Any], optimiser: torch.optim.Optimizer, found: Path) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.composer.load_state_dict(state["composer"])
            if "optimiser" in state:  # a finished training has none: it will not take another step
                optimiser.load_state_dict(state["optimiser"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"checkpoint {found} does not fit this model ({reason}); it was made with another "
                           f"configuration: delete it to start that training over") from None

    def _best_weights(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """The best weights a checkpoint refers to (see :meth:`save`)."""
        best = state.get("best_weights")
        if best is None:
            return None
        if best == "model":
            return copy.deepcopy({"model": state["model"], "composer": state["composer"]})
        side = load_checkpoint(best_file(self.path))
        if side.get("epoch") != best:
            raise RunError(f"checkpoint {best_file(self.path)} holds the best weights of epoch {side.get('epoch')}, "
                           f"not of epoch {best}; delete {self.path.parent} to start that training over")
        self._best_saved = best
        return side["best_state"]

    def save(self, optimiser: torch.optim.Optimizer, generator: torch.Generator, loop: LoopState) -> None:
        """Checkpoint after an epoch. The best weights so far are the model's own in an epoch that improved;
        otherwise they go to a side file (:func:`best_file`), written once when they stop being the model's, not
        every epoch: a quarter of the bytes saved per epoch."""
        best_epoch = loop.history.best_epoch
        if loop.best_state is None:
            best = None
        elif best_epoch == loop.epoch - 1:
            best = "model"
        else:
            if self._best_saved != best_epoch:
                save_checkpoint(best_file(self.path), {"epoch": best_epoch, "best_state": loop.best_state})
                self._best_saved = best_epoch
            best = best_epoch
        save_checkpoint(self.path, self._snapshot(optimiser, generator, loop) | {"best_weights": best})

    def save_finished(self, generator: torch.Generator, loop: LoopState) -> None:
        """A finished training keeps only what a resumed run reads back: its final (best) weights and history, a
        third of a running checkpoint, without the optimiser state, the side file or the previous copies."""
        state = self._snapshot(None, generator, loop) | {"best_weights": None if loop.best_state is None else "model"}
        save_checkpoint(self.path, state)
        drop_side_files(self.path)

    def _snapshot(self, optimiser: torch.optim.Optimizer | None, generator: torch.Generator,
                  loop: LoopState) -> dict[str, Any]:
        """Everything :meth:`restore` needs, as tensors and JSON values (the history as one JSON text); no
        optimiser state for a finished training."""
        return {"settings": self.settings, "strategy": self.composer.strategy, "epoch": loop.epoch,
                "stopped": loop.stopped, "best": loop.best, "waited": loop.waited,
                "history": json.dumps(loop.history.to_json()),
                "model": self.model.state_dict(), "composer": self.composer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(generator)} | (
                   {} if optimiser is None else {"optimiser": optimiser.state_dict()})
