"""Fine-tuning optimisation: parameter groups, the optimiser, the learning-rate schedule and the optimiser step
(gradient accumulation, clipping).

Parameter groups follow the usual fine-tuning recipe (Howard & Ruder 2018, "Universal Language Model Fine-tuning";
Kornblith et al. 2019): trained backbones with pretrained (or file) weights learn at a fraction of the heads' rate
(``train.backbone_lr_scale``; randomly initialised ones, which have nothing to keep, at the full rate), a task may
ask for a faster head (``lr_scale``), and with weight decay the biases and normalisation weights (1-D tensors) are
not decayed. The schedule is a linear warm-up (Goyal et al. 2017) followed by a constant rate or a cosine decay to
zero at the last epoch (Loshchilov & Hutter 2017, SGDR).

The schedule is a pure function of the optimiser step, and the step is a function of the epoch: a training
resumed from a checkpoint (which holds the optimiser's state, the groups' base rates included) continues with
exactly the rates of an uninterrupted one, without a scheduler object to save.

Example:
    >>> optimiser = create_optimiser(model, composer, TrainConfig(lr=1e-3))  # doctest: +SKIP
    >>> stepper = Stepper(optimiser, scaler, TrainConfig(lr=1e-3))  # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig

BASE_LR = "base_lr"  # the key of a group's unscheduled rate (kept in the optimiser's state, so in checkpoints)


def _split_decay(params: list[nn.Parameter], weight_decay: float) -> list[tuple[list[nn.Parameter], float]]:
    """(matrices and kernels, ``weight_decay``) and (biases and normalisation weights, 0) when decaying."""
    if weight_decay == 0.0:
        return [(params, 0.0)]
    return [([p for p in params if p.ndim > 1], weight_decay), ([p for p in params if p.ndim <= 1], 0.0)]


def param_groups(model: nn.Module, composer: nn.Module, settings: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups, each with its ``lr`` and ``base_lr``.

    Args:
        model: a :class:`~mtl_core.model.MultiTaskModel` (its ``fusion`` is the backbones when they are trained).
        composer: the loss composer (its tasks give the heads' ``lr_scale``; an adaptive weighting's parameters
            learn at ``lr``).
        settings: ``lr``, ``backbone_lr_scale`` and ``weight_decay``.

    Returns:
        Groups of trainable parameters only; empty groups are left out.
    """
    heads = getattr(model, "heads", {})
    scales: dict[int, float] = {}
    for name, task in getattr(composer, "tasks", {}).items():
        if name in heads:
            scales.update({id(p): float(getattr(task, "lr_scale", 1.0)) for p in heads[name].parameters()})
    for backbone in getattr(getattr(model, "fusion", None), "backbones", []):
        if backbone.info.weights != "random":  # a random start has nothing to keep: it learns at the full rate
            scales.update({id(p): settings.backbone_lr_scale for p in backbone.parameters()})
    by_scale: dict[float, list[nn.Parameter]] = {}
    for p in [*model.parameters(), *composer.parameters()]:
        if p.requires_grad:
            by_scale.setdefault(scales.get(id(p), 1.0), []).append(p)
    groups = []
    for scale, params in by_scale.items():
        for chosen, decay in _split_decay(params, settings.weight_decay):
            if chosen:
                lr = settings.lr * scale
                groups.append({"params": chosen, "lr": lr, BASE_LR: lr, "weight_decay": decay})
    return groups


def create_optimiser(model: nn.Module, composer: nn.Module, settings: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the paper's) or AdamW (decoupled weight decay, Loshchilov & Hutter 2019) over :func:`param_groups`."""
    kind = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    groups = param_groups(model, composer, settings)
    try:  # the fused kernel is ~10x faster than the per-tensor loop torch uses on the CPU by default
        return kind(groups, lr=settings.lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return kind(groups, lr=settings.lr)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate multiplier of optimiser step ``step`` (0-based) of ``total``: linear warm-up over
    ``warmup`` steps (from 1 / warmup to 1), then 1 (``constant``) or a cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule != "cosine" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Stepper:
    """When and how the optimiser steps: every ``accumulate`` batches (and after an epoch's last one), with the
    accumulated gradients averaged, unscaled (fp16), clipped and the scheduled rates set.

    The trainer calls :meth:`begin_epoch` before an epoch's first batch and :meth:`after_backward` after each
    batch's backward pass (which adds into ``.grad``).
    """

    def __init__(self, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler, settings: TrainConfig) -> None:
        self.optimiser, self.scaler, self.settings = optimiser, scaler, settings
        self.params = [p for group in optimiser.param_groups for p in group["params"]]
        self._epoch, self._batches, self._seen, self._pending, self._steps_per_epoch = 0, 0, 0, 0, 1

    def steps_per_epoch(self, batches: int) -> int:
        """Optimiser steps in an epoch of ``batches`` batches."""
        return max(1, math.ceil(batches / self.settings.accumulate))

    def begin_epoch(self, epoch: int, batches: int) -> None:
        """Start epoch ``epoch`` (0-based) of ``batches`` batches: no gradient carried over."""
        self._epoch, self._batches, self._seen, self._pending = epoch, batches, 0, 0
        self._steps_per_epoch = self.steps_per_epoch(batches)
        self.optimiser.zero_grad(set_to_none=True)

    def after_backward(self) -> None:
        """Count one batch; step when ``accumulate`` have added their gradients or the epoch's last one has."""
        self._seen += 1
        self._pending += 1
        if self._pending == self.settings.accumulate or self._seen >= self._batches:
            self._step()

    def current_lr_factor(self) -> float:
        """The schedule's multiplier for the next optimiser step."""
        s = self.settings
        step = self._epoch * self._steps_per_epoch + (self._seen - 1) // s.accumulate
        return lr_factor(step, s.epochs * self._steps_per_epoch, s.warmup_epochs * self._steps_per_epoch, s.schedule)

    def _step(self) -> None:
        factor = self.current_lr_factor()
        for group in self.optimiser.param_groups:
            group["lr"] = group[BASE_LR] * factor
        if self._pending > 1 or self.settings.grad_clip is not None:
            self.scaler.unscale_(self.optimiser)
            if self._pending > 1:  # the mean over the window's batches, as one batch that large would give
                for p in self.params:
                    if p.grad is not None:
                        p.grad.div_(self._pending)
            if self.settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.params, self.settings.grad_clip)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.optimiser.zero_grad(set_to_none=True)
        self._pending = 0
