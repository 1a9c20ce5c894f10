"""Training loop: Adam, early stopping on the validation loss with the best weights restored, seeded."""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import TensorData
from .losses import LossComposer
from .model import MultiTaskModel

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


@dataclass
class History:
    """Per-epoch losses: ``train`` / ``val`` hold {"total": .., task: ..} dicts; ``weights`` the loss weights."""

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    weights: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1


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

    def _optimiser(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += [p for p in self.composer.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def _outputs(self, batch: dict) -> dict[str, torch.Tensor]:
        if "features" in batch:
            return self.model.forward_features(batch["features"].to(self.device))
        return self.model(batch["image"].to(self.device))

    def _step_losses(self, batch: dict):
        outputs = self._outputs(batch)
        targets = {k: v.to(self.device) for k, v in batch["targets"].items()}
        masks = {k: v.to(self.device) for k, v in batch["mask"].items()}
        return self.composer(outputs, targets, masks), masks

    def _run_epoch(self, data: TensorData, optimiser: torch.optim.Optimizer | None,
                   generator: torch.Generator | None) -> tuple[dict[str, float], dict[str, float]]:
        """One pass; trains when ``optimiser`` is given. Returns mean losses (label-weighted) and last weights."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        weights: dict[str, float] = {}
        for batch in data.batches(self.settings.batch_size, generator):
            with torch.set_grad_enabled(optimiser is not None):
                out, masks = self._step_losses(batch)
                if optimiser is not None:
                    optimiser.zero_grad(set_to_none=True)
                    out.total.backward()
                    optimiser.step()
            n = len(batch["id"])
            sums["total"] = sums.get("total", 0.0) + float(out.total.detach()) * n
            counts["total"] = counts.get("total", 0) + n
            for name, loss in out.per_task.items():
                labelled = int(masks[name].sum())
                sums[name] = sums.get(name, 0.0) + float(loss.detach()) * labelled
                counts[name] = counts.get(name, 0) + labelled
            weights = out.weights
        return {k: sums[k] / counts[k] if counts[k] else 0.0 for k in sums}, weights

    def fit(self, train: TensorData, val: TensorData | None = None, progress: Callable | None = None) -> History:
        """Train, early-stop on :meth:`stopping_score` of the validation losses, restore the best state.

        Args:
            progress: optional tqdm-like factory for an epoch progress bar.
        """
        s = self.settings
        seed_everything(s.seed)
        self.model.to(self.device)
        self.composer.to(self.device)
        optimiser = self._optimiser()
        generator = torch.Generator().manual_seed(s.seed)
        history, best, best_state, waited = History(), float("inf"), None, 0
        bar = progress(total=s.epochs, desc="train", unit="epoch") if progress else None
        for epoch in range(s.epochs):
            if bar:
                bar.update(1)
                if history.val:
                    bar.set_postfix(val_loss=f"{history.val[-1]['total']:.3f}")
            self.model.train()
            train_losses, weights = self._run_epoch(train, optimiser, generator)
            self.composer.weighting.end_epoch({k: v for k, v in train_losses.items() if k != "total"})
            history.train.append(train_losses)
            history.weights.append(weights)
            if val is None or len(val) == 0:
                continue
            val_losses = self.evaluate_loss(val)
            history.val.append(val_losses)
            score = self.stopping_score(val_losses)
            if score < best - 1e-9:
                best, waited, history.best_epoch = score, 0, epoch
                best_state = copy.deepcopy((self.model.state_dict(), self.composer.state_dict()))
            else:
                waited += 1
                if waited >= s.patience:
                    log.info("early stop at epoch %d (best %d)", epoch + 1, history.best_epoch + 1)
                    break
        if bar:
            bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state[0])
            self.composer.load_state_dict(best_state[1])
        else:
            history.best_epoch = len(history.train) - 1
        return history

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
            for name, out in self._outputs(batch).items():
                chunks.setdefault(name, []).append(out.float().cpu())
        return {k: torch.cat(v) for k, v in chunks.items()}
