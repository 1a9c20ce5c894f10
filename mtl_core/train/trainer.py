"""Training loop: Adam, early stopping on the validation loss with the best weights restored, seeded."""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..accel import out_of_memory, precision_context, resolve_precision
from ..data import TensorData
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


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainSettings:
    """Optimisation settings (the paper: Adam, learning rate 1e-4)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 15
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # see mtl_core.accel: auto is bf16 autocast on CUDA, fp32 elsewhere


@dataclass
class History:
    """Per-epoch losses: ``train`` / ``val`` hold {"total": .., task: ..} dicts; ``weights`` the loss weights."""

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    weights: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1


@dataclass
class _Loop:
    """Where a training stands: what a checkpoint saves besides the tensors."""

    history: History = field(default_factory=History)
    epoch: int = 0  # epochs completed
    stopped: bool = False  # early stopping ended the training
    best: float = float("inf")
    waited: int = 0
    best_state: dict[str, Any] | None = None


class Trainer:
    """Fits a :class:`MultiTaskModel` with a :class:`LossComposer`.

    Example:
        >>> trainer = Trainer(model, LossComposer(tasks), TrainSettings(epochs=5))  # doctest: +SKIP
        >>> history = trainer.fit(train_data, val_data)  # doctest: +SKIP
    """

    def __init__(self, model: MultiTaskModel, composer: LossComposer, settings: TrainSettings | None = None) -> None:
        self.model, self.composer = model, composer
        self.settings = settings or TrainSettings()
        self.device = pick_device(self.settings.device)
        self.precision = resolve_precision(self.settings.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self._best_saved = -1  # epoch whose best weights the side file holds

    def _optimiser(self) -> torch.optim.Optimizer:
        # A task may ask for a faster head (a point task's new head on frozen maps): its own parameter group.
        scaled = {name: float(getattr(task, "lr_scale", 1.0)) for name, task in self.composer.tasks.items()
                  if getattr(task, "lr_scale", 1.0) != 1.0 and name in self.model.heads}
        own = {id(p) for name in scaled for p in self.model.heads[name].parameters()}
        params: list = [{"params": [p for p in self.model.parameters() if p.requires_grad and id(p) not in own] +
                         [p for p in self.composer.parameters() if p.requires_grad]}]
        params += [{"params": [p for p in self.model.heads[name].parameters() if p.requires_grad],
                    "lr": self.settings.lr * scale} for name, scale in scaled.items()]
        options = {"lr": self.settings.lr, "weight_decay": self.settings.weight_decay}
        try:  # the fused kernel is ~10x faster than the per-tensor loop torch uses on the CPU by default
            return torch.optim.Adam(params, fused=True, **options)
        except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
            return torch.optim.Adam(params, **options)

    def _outputs(self, batch: dict) -> dict[str, torch.Tensor]:
        if "features" in batch:
            return self.model.forward_features(batch["features"].to(self.device))
        return self.model(batch["image"].to(self.device))

    def _step_losses(self, batch: dict):
        outputs = self._outputs(batch)
        targets = {k: v.to(self.device) for k, v in batch["targets"].items()}
        masks = {k: v.to(self.device) for k, v in batch["mask"].items()}
        return self.composer(outputs, targets, masks), masks

    def _step(self, batch: dict, optimiser: torch.optim.Optimizer | None):
        """Losses of one batch in the training precision, and an optimiser step (loss-scaled for fp16)."""
        with torch.set_grad_enabled(optimiser is not None):
            with precision_context(self.precision, self.device):
                out, masks = self._step_losses(batch)
            if optimiser is not None:
                optimiser.zero_grad(set_to_none=True)
                self.scaler.scale(out.total).backward()
                self.scaler.step(optimiser)
                self.scaler.update()
        return out, masks

    def _run_epoch(self, data: TensorData, optimiser: torch.optim.Optimizer | None,
                   generator: torch.Generator | None) -> tuple[dict[str, float], dict[str, float]]:
        """One pass; trains when ``optimiser`` is given. Returns mean losses (label-weighted) and last weights."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        weights: dict[str, float] = {}
        for batch in data.batches(self.settings.batch_size, generator):
            try:
                out, masks = self._step(batch, optimiser)
            except torch.cuda.OutOfMemoryError:
                raise out_of_memory("training", "train.batch_size", self.settings.batch_size, self.device) from None
            n = len(batch["id"])
            sums["total"] = sums.get("total", 0.0) + float(out.total.detach()) * n
            counts["total"] = counts.get("total", 0) + n
            for name, loss in out.per_task.items():
                labelled = int(masks[name].sum())
                sums[name] = sums.get(name, 0.0) + float(loss.detach()) * labelled
                counts[name] = counts.get(name, 0) + labelled
            weights = out.weights
        return {k: sums[k] / counts[k] if counts[k] else 0.0 for k in sums}, weights

    def fit(self, train: TensorData, val: TensorData | None = None, progress: Callable | None = None,
            checkpoint: Path | None = None) -> History:
        """Train, early-stop on the validation total loss, restore the best weights; returns the history.

        Args:
            progress: optional tqdm-like factory for an epoch progress bar.
            checkpoint: optional file. When it exists, training continues from it (an interrupted training
                resumed this way ends exactly as an uninterrupted one on the CPU); after every epoch it is
                rewritten atomically with the model, optimiser, weighting, best weights, RNG states and history.

        Raises:
            RunError: ``checkpoint`` is corrupt, or was written for another model or other settings.
        """
        s = self.settings
        seed_everything(s.seed)
        self.model.to(self.device)
        self.composer.to(self.device)
        optimiser = self._optimiser()
        generator = torch.Generator().manual_seed(s.seed)
        loop = _Loop()
        found = checkpoint_file(checkpoint) if checkpoint is not None else None
        if found is not None:
            self._restore(found, optimiser, generator, loop, Path(checkpoint))
        bar = progress(total=s.epochs, desc="train", unit="epoch") if progress else None
        first_epoch = loop.epoch
        try:
            if bar and loop.epoch:
                bar.update(loop.epoch)
            while loop.epoch < s.epochs and not loop.stopped:
                if bar:
                    bar.update(1)
                    if loop.history.val:
                        bar.set_postfix(val_loss=f"{loop.history.val[-1]['total']:.3f}")
                self._epoch(train, val, optimiser, generator, loop)
                loop.epoch += 1
                if checkpoint is not None:
                    self._save(Path(checkpoint), optimiser, generator, loop)
        finally:  # an interrupted training leaves a clean console line too
            if bar:
                bar.close()
        if loop.best_state is not None:
            self.model.load_state_dict(loop.best_state["model"])
            self.composer.load_state_dict(loop.best_state["composer"])
        else:
            loop.history.best_epoch = len(loop.history.train) - 1
        if checkpoint is not None and loop.epoch > first_epoch:
            self._save_finished(Path(checkpoint), generator, loop)
        return loop.history

    def _save_finished(self, path: Path, generator: torch.Generator, loop: _Loop) -> None:
        """A finished training keeps only what a resumed run reads back: its final (best) weights and history, a
        third of a running checkpoint, without the optimiser state, the side file or the previous copies."""
        state = self._snapshot(None, generator, loop) | {"best_weights": None if loop.best_state is None else "model"}
        save_checkpoint(path, state)
        drop_side_files(path)

    def _epoch(self, train: TensorData, val: TensorData | None, optimiser: torch.optim.Optimizer,
               generator: torch.Generator, loop: _Loop) -> None:
        """One training epoch, its validation and the early-stopping bookkeeping."""
        history = loop.history
        self.model.train()
        train_losses, weights = self._run_epoch(train, optimiser, generator)
        self.composer.weighting.end_epoch({k: v for k, v in train_losses.items() if k != "total"})
        history.train.append(train_losses)
        history.weights.append(weights)
        if val is None or len(val) == 0:
            return
        val_losses = self.evaluate_loss(val)
        history.val.append(val_losses)
        score = self.stopping_score(val_losses)
        if score < loop.best - 1e-9:
            loop.best, loop.waited, history.best_epoch = score, 0, loop.epoch
            loop.best_state = copy.deepcopy({"model": self.model.state_dict(), "composer": self.composer.state_dict()})
        else:
            loop.waited += 1
            if loop.waited >= self.settings.patience:
                log.info("early stop at epoch %d (best %d)", loop.epoch + 1, history.best_epoch + 1)
                loop.stopped = True

    def _settings_record(self) -> dict:
        return {k: v for k, v in asdict(self.settings).items() if k != "device"}  # another device may resume

    def _save(self, path: Path, optimiser: torch.optim.Optimizer, generator: torch.Generator, loop: _Loop) -> None:
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
                save_checkpoint(best_file(path), {"epoch": best_epoch, "best_state": loop.best_state})
                self._best_saved = best_epoch
            best = best_epoch
        save_checkpoint(path, self._snapshot(optimiser, generator, loop) | {"best_weights": best})

    def _snapshot(self, optimiser: torch.optim.Optimizer | None, generator: torch.Generator, loop: _Loop) -> dict:
        """Everything :meth:`_restore` needs, as tensors and JSON values (the history as one JSON text); no
        optimiser state for a finished training."""
        h = loop.history
        history = {"train": h.train, "val": h.val, "weights": h.weights, "best_epoch": h.best_epoch}
        return {"settings": self._settings_record(), "strategy": self.composer.strategy, "epoch": loop.epoch,
                "stopped": loop.stopped, "best": loop.best, "waited": loop.waited, "history": json.dumps(history),
                "model": self.model.state_dict(), "composer": self.composer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(generator)} | (
                   {} if optimiser is None else {"optimiser": optimiser.state_dict()})

    def _best_weights(self, state: dict, checkpoint: Path) -> dict[str, Any] | None:
        """The best weights a checkpoint refers to (see :meth:`_save`)."""
        best = state.get("best_weights")
        if best is None:
            return None
        if best == "model":
            return copy.deepcopy({"model": state["model"], "composer": state["composer"]})
        side = load_checkpoint(best_file(checkpoint))
        if side.get("epoch") != best:
            raise RunError(f"checkpoint {best_file(checkpoint)} holds the best weights of epoch {side.get('epoch')}, "
                           f"not of epoch {best}; delete {checkpoint.parent} to start that training over")
        self._best_saved = best
        return side["best_state"]

    def _restore(self, path: Path, optimiser: torch.optim.Optimizer, generator: torch.Generator, loop: _Loop,
                 checkpoint: Path) -> None:
        """Continue from the checkpoint at ``path`` (``checkpoint``, or the copy a killed save left aside)."""
        state = load_checkpoint(path)
        mine = self._settings_record() | {"strategy": self.composer.strategy}
        theirs = dict(state.get("settings", {})) | {"strategy": state.get("strategy")}
        changed = [k for k in mine if mine[k] != theirs.get(k)]
        if changed:
            raise RunError(f"checkpoint {path} was made with other training settings ({changed[0]}: "
                           f"{theirs.get(changed[0])!r} there, {mine[changed[0]]!r} now); use the same settings, "
                           f"or delete it to start that training over")
        try:
            self.model.load_state_dict(state["model"])
            self.composer.load_state_dict(state["composer"])
            if "optimiser" in state:  # a finished training has none: it will not take another step
                optimiser.load_state_dict(state["optimiser"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"checkpoint {path} does not fit this model ({reason}); it was made with another "
                           f"configuration: delete it to start that training over") from None
        restore_rng(state["rng"], generator)
        h = json.loads(state["history"])
        loop.history = History(list(h["train"]), list(h["val"]), list(h["weights"]), int(h["best_epoch"]))
        loop.epoch, loop.stopped, loop.best, loop.waited = (int(state["epoch"]), bool(state["stopped"]),
                                                            float(state["best"]), int(state["waited"]))
        loop.best_state = self._best_weights(state, checkpoint)
        log.info("resuming training from %s after epoch %d", path, loop.epoch)

    def stopping_score(self, val_losses: dict[str, float]) -> float:
        """Early-stopping criterion: per-task validation losses summed with the tasks' static weights, so that
        adaptive weightings, whose weights move between epochs, are compared on a fixed scale."""
        return sum(task.weight * val_losses.get(name, 0.0) for name, task in self.composer.tasks.items())

    @torch.no_grad()
    def evaluate_loss(self, data: TensorData) -> dict[str, float]:
        """Mean losses on ``data`` in eval mode."""
        self.model.eval()
        losses, _ = self._run_epoch(data, None, None)
        return losses

    @torch.no_grad()
    def predict(self, data: TensorData) -> dict[str, torch.Tensor]:
        """Raw head outputs {task: (N, K)} for every case of ``data``, on the CPU."""
        self.model.eval()
        self.model.to(self.device)
        chunks: dict[str, list[torch.Tensor]] = {}
        for batch in data.batches(max(self.settings.batch_size, 256)):
            with precision_context(self.precision, self.device):
                outputs = self._outputs(batch)
            for name, out in outputs.items():
                chunks.setdefault(name, []).append(out.float().cpu())
        return {k: torch.cat(v) for k, v in chunks.items()}
