"""Training loop: Adam, early stopping on the validation loss with the best weights restored, seeded."""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..accel import out_of_memory, precision_context, resolve_precision
from ..config import TrainConfig
from ..data import TensorData
from ..distributed import Parallel
from ..errors import RunError
from ..model import MultiTaskModel
from .gradients import GradientWeighting, backward
from .losses import LossComposer
from .optim import Stepper, create_optimiser
from .state import History, LoopState, TrainingCheckpoint

log = logging.getLogger(__name__)

#: The trainer's settings are the run config's ``train`` section (Adam, learning rate 1e-4 as in the paper, early
#: stopping, seed, device, precision): one class, so every default lives in one place, :class:`TrainConfig`.
TrainSettings = TrainConfig


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


class _NotFinite(Exception):
    """A loss of one batch is NaN or infinite (``args[0]``: the task, or "total")."""


def _first_non_finite(total: float, per_task: dict[str, float]) -> str | None:
    """The task whose loss is not finite (the first), "total" when only the sum is not; None when all are."""
    bad = [name for name, value in per_task.items() if not math.isfinite(value)]
    return bad[0] if bad else (None if math.isfinite(total) else "total")


class Trainer:
    """Fits a :class:`MultiTaskModel` with a :class:`LossComposer`.

    Example:
        >>> trainer = Trainer(model, LossComposer(tasks), TrainConfig(epochs=5))  # doctest: +SKIP
        >>> history = trainer.fit(train_data, val_data)  # doctest: +SKIP
    """

    def __init__(self, model: MultiTaskModel, composer: LossComposer, settings: TrainConfig | None = None,
                 parallel: Parallel | None = None) -> None:
        self.model, self.composer = model, composer
        self.settings = settings or TrainConfig()
        # a distributed run (mtl_core/distributed.py): DDP, a share of every batch, checkpoints from rank 0 only
        self.parallel, self._ddp = parallel or Parallel(), None
        self.device = pick_device(self.settings.device)
        self.precision = resolve_precision(self.settings.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def _optimiser(self) -> torch.optim.Optimizer:
        # per-group rates: backbones at a fraction, a task's faster head at its lr_scale (train/optim.py)
        return create_optimiser(self.model, self.composer, self.settings)

    def _outputs(self, batch: dict) -> dict[str, torch.Tensor]:
        if "features" in batch:
            return self.model.forward_features(batch["features"].to(self.device))
        net = self._ddp if self._ddp is not None and self.model.training else self.model
        return net(batch["image"].to(self.device))

    def _step_losses(self, batch: dict):
        outputs = self._outputs(batch)
        targets = {k: v.to(self.device) for k, v in batch["targets"].items()}
        masks = {k: v.to(self.device) for k, v in batch["mask"].items()}
        scales = self.parallel.loss_scales(masks) if self.model.training else None  # a share of the global batch
        return self.composer(outputs, targets, masks, scales=scales), masks

    def _step(self, batch: dict, optimiser: torch.optim.Optimizer | None):
        """Losses of one batch in the training precision, and an optimiser step (loss-scaled for fp16)."""
        with torch.set_grad_enabled(optimiser is not None):
            with precision_context(self.precision, self.device):
                out, masks = self._step_losses(batch)
            if optimiser is not None:
                backward(out, masks, self.model, self.composer, self.scaler)  # loss- or gradient-level
                self.parallel.average_gradients(self.composer.parameters())  # DDP averages the model's
                self._stepper.after_backward()  # accumulation, clipping, schedule (train/optim.py)
        return out, masks

    def _run_epoch(self, data: TensorData, optimiser: torch.optim.Optimizer | None,
                   generator: torch.Generator | None) -> tuple[dict[str, float], dict[str, float]]:
        """One pass; trains when ``optimiser`` is given. Returns mean losses (label-weighted) and last weights."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        weights: dict[str, float] = {}
        share = self.parallel.share if optimiser is not None else None  # evaluation: every case, every process
        for batch in data.batches(self.settings.batch_size, generator, share):
            try:
                out, masks = self._step(batch, optimiser)
            except torch.cuda.OutOfMemoryError:
                raise out_of_memory("training", "train.batch_size", self.settings.batch_size, self.device) from None
            n = len(batch["id"])
            total, per_task = float(out.total.detach()), {k: float(v.detach()) for k, v in out.per_task.items()}
            bad = _first_non_finite(total, per_task)
            if bad is not None:  # a diverged training: stop before NaN reaches the weights, the metrics, the report
                raise _NotFinite(bad)
            sums["total"] = sums.get("total", 0.0) + total * n
            counts["total"] = counts.get("total", 0) + n
            for name, loss in per_task.items():
                labelled = int(masks[name].sum())
                sums[name] = sums.get(name, 0.0) + loss * labelled
                counts[name] = counts.get(name, 0) + labelled
            weights = out.weights
        if share is not None:  # the epoch's means over every process's share
            keys = sorted(sums)
            totals = self.parallel.sum_floats([sums[k] for k in keys] + [counts[k] for k in keys])
            sums, counts = dict(zip(keys, totals[:len(keys)], strict=True)), dict(zip(keys, totals[len(keys):],
                                                                                      strict=True))
            # augmentation draws from the batch generator as many numbers as a share has cases: rank 0's state
            # for all, so that every process shuffles the next epoch alike
            generator.set_state(self.parallel.from_main(generator.get_state()))
        return {k: sums[k] / counts[k] if counts[k] else 0.0 for k in sums}, weights

    def fit(self, train: TensorData, val: TensorData | None = None, progress: Callable | None = None,
            checkpoint: Path | None = None) -> History:
        """Train, early-stop on the validation total loss, restore the best weights; returns the history.

        Args:
            progress: optional tqdm-like factory for an epoch progress bar.
            checkpoint: optional file. When it exists, training continues from it (an interrupted training
                resumed this way ends exactly as an uninterrupted one on the CPU); after every epoch it is
                rewritten atomically with the model, optimiser, weighting, best weights, RNG states and history
                (:class:`~mtl_core.train.state.TrainingCheckpoint`).

        Raises:
            RunError: ``checkpoint`` is corrupt, or was written for another model or other settings.
        """
        seed_everything(self.settings.seed)
        self.model.to(self.device)
        self.composer.to(self.device)
        optimiser = self._optimiser()
        self._stepper = Stepper(optimiser, self.scaler, self.settings)
        generator = torch.Generator().manual_seed(self.settings.seed)
        saved = None if checkpoint is None else TrainingCheckpoint(checkpoint, self.model, self.composer, self.scaler,
                                                                   self.settings_record())
        loop = LoopState() if saved is None else saved.restore(optimiser, generator)
        self._ddp = self._distributed()
        first_epoch = loop.epoch
        self._epochs(train, val, optimiser, generator, loop, saved, progress)
        if loop.best_state is not None:
            self.model.load_state_dict(loop.best_state["model"])
            self.composer.load_state_dict(loop.best_state["composer"])
        else:
            loop.history.best_epoch = len(loop.history.train) - 1
        if saved is not None and loop.epoch > first_epoch and self.parallel.main:
            saved.save_finished(generator, loop)
        return loop.history

    def _distributed(self):
        """The model in DDP for a distributed run (None otherwise); a gradient-level method is refused there."""
        if self.parallel.active and isinstance(self.composer.weighting, GradientWeighting):
            raise RunError(f"loss.strategy {self.composer.strategy!r} combines per-task gradients, which a "
                           "distributed run (torchrun) does not support; choose a loss-level strategy (static, "
                           "equal, uncertainty, dwa, ...) or run in one process")
        return self.parallel.wrap(self.model, self.device)

    def _epochs(self, train: TensorData, val: TensorData | None, optimiser: torch.optim.Optimizer,
                generator: torch.Generator, loop: LoopState, saved: TrainingCheckpoint | None,
                progress: Callable | None) -> None:
        """The remaining epochs (with a progress bar), each followed by a checkpoint."""
        bar = progress(total=self.settings.epochs, desc="train", unit="epoch") if progress else None
        try:
            if bar and loop.epoch:
                bar.update(loop.epoch)
            while loop.epoch < self.settings.epochs and not loop.stopped:
                if bar:
                    bar.update(1)
                    if loop.history.val:
                        bar.set_postfix(val_loss=f"{loop.history.val[-1]['total']:.3f}")
                self._epoch(train, val, optimiser, generator, loop)
                loop.epoch += 1
                if saved is not None and self.parallel.main:
                    saved.save(optimiser, generator, loop)
        finally:  # an interrupted training leaves a clean console line too
            if bar:
                bar.close()

    def _epoch(self, train: TensorData, val: TensorData | None, optimiser: torch.optim.Optimizer,
               generator: torch.Generator, loop: LoopState) -> None:
        """One training epoch, its validation and the early-stopping bookkeeping."""
        history = loop.history
        self.model.train()
        self._stepper.begin_epoch(loop.epoch, train.batch_count(self.settings.batch_size, self.parallel.share))
        try:
            train_losses, weights = self._run_epoch(train, optimiser, generator)
        except _NotFinite as exc:
            raise self._diverged(loop.epoch, exc.args[0], "training") from None
        self.composer.weighting.end_epoch({k: v for k, v in train_losses.items() if k != "total"})
        history.train.append(train_losses)
        history.weights.append(weights)
        if val is None or len(val) == 0:
            return
        try:
            val_losses = self.parallel.from_main(self.evaluate_loss(val))  # one early-stopping decision for all
        except _NotFinite as exc:
            raise self._diverged(loop.epoch, exc.args[0], "validation") from None
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

    def _diverged(self, epoch: int, task: str, part: str) -> RunError:
        return RunError(f"loss is not finite at epoch {epoch + 1} (task {task}, {part} data): the training diverged; "
                        f"lower train.lr (now {self.settings.lr:g}), or check that task's targets for huge values; "
                        "no results were written")

    def settings_record(self) -> dict:
        """The settings a checkpoint records and a resumed training must share (another device may resume)."""
        return {k: v for k, v in self.settings.model_dump().items() if k != "device"}

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
        outputs = {k: torch.cat(v) for k, v in chunks.items()}
        for name, values in outputs.items():
            if not bool(torch.isfinite(values).all()):  # NaN would become a metric, and argmax of NaN a class
                raise RunError(f"the model's outputs for task {name} are not finite (NaN or infinite): the "
                               f"training diverged; lower train.lr (now {self.settings.lr:g}); no results were "
                               "written")
        return outputs
