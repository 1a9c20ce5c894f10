"""Gradient-level multi-task methods: the trainer computes per-task gradients, a method combines them.

A method that only reweights losses is a :class:`~mtl_core.train.losses.Weighting`; a method that needs each
task's gradient is a :class:`GradientWeighting`, registered in the same :data:`~mtl_core.train.losses.WEIGHTINGS`
and chosen by the same ``loss.strategy``. It never calls ``backward``: :func:`backward` (the trainer's one call)
computes each labelled task's gradient of the shared parameters (``level = "params"``) or of the shared
representation (``level = "rep"``, the cheap variants), hands them to :meth:`GradientWeighting.combine` and adds
the combined direction to ``.grad``. Head (task-specific) parameters get their own task's gradient as usual.

Loss scaling: per-task gradients are taken of the scaled losses (fp16 keeps its range), divided by the scale
before they are combined (MGDA, Nash-MTL, ... are not scale-equivariant) and the direction is scaled back, so the
:class:`torch.amp.GradScaler` unscales, checks for overflow and steps as for a plain ``backward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import RunError
from .losses import LossComposer, LossOutput, Weighting


@dataclass(frozen=True)
class Combination:
    """What a gradient method returns: the update direction (P,) and each task's effective weight (T,)."""

    direction: torch.Tensor
    weights: torch.Tensor


class GradientWeighting(Weighting):
    """Base of the methods that combine per-task gradients (PCGrad, MGDA, CAGrad, Nash-MTL, ...).

    Subclasses implement :meth:`combine`. The loss they report weighs every labelled task 1 (the total is the
    plain sum); the weights the history records are the effective ones :meth:`combine` returns.
    """

    #: "params": gradients of the shared parameters; "rep": gradients of the shared representation (cheaper)
    level: ClassVar[str] = "params"

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: torch.tensor(1.0) for n in losses}

    def combine(self, grads: torch.Tensor, losses: torch.Tensor, names: list[str]) -> Combination:
        """Per-task gradients ``grads`` (T, P), unscaled, of the labelled tasks ``names`` (their losses (T,),
        detached) -> the direction (P,) to descend along and the effective weights (T,)."""
        raise NotImplementedError


def _task_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that belong to one task: the heads, and a trunk's per-task parts (MMoE gates, ...)."""
    own = list(model.heads.parameters()) if hasattr(model, "heads") else []
    trunk = getattr(model, "trunk", None)
    if trunk is not None and hasattr(trunk, "task_parameters"):
        own += list(trunk.task_parameters())
    return [p for p in own if p.requires_grad]


def _add_grad(params: list[nn.Parameter], grads: list[torch.Tensor | None]) -> None:
    """``p.grad += g`` (adding keeps gradient accumulation over micro-batches working)."""
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g.detach())


def _flat(grads: tuple[torch.Tensor | None, ...], like: list[torch.Tensor]) -> torch.Tensor:
    """Gradients of several tensors (None: unused) -> one float32 vector (P,)."""
    return torch.cat([(torch.zeros_like(t) if g is None else g).reshape(-1).float() for g, t in zip(grads, like,
                                                                                                    strict=True)])


def _split(vector: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """One vector (P,) -> tensors shaped (and typed) like ``like``."""
    sizes = [t.numel() for t in like]
    return [part.view_as(t).to(t.dtype) for part, t in zip(vector.split(sizes), like, strict=True)]


def backward(out: LossOutput, masks: dict[str, torch.Tensor], model: nn.Module, composer: LossComposer,
             scaler: torch.amp.GradScaler, factor: float = 1.0) -> None:
    """Add the gradient of one (micro-)batch to ``.grad``: a plain ``backward`` of the weighted total for a loss
    weighting, the combined per-task gradients for a :class:`GradientWeighting`. ``factor`` scales what is
    added (e.g. ``1 / accumulation_steps``)."""
    weighting = composer.weighting
    trunk = getattr(model, "trunk", None)
    shared_rep = getattr(trunk, "last_shared", None)
    if trunk is not None:
        trunk.last_shared = None  # a graph tensor must not outlive its step (nor be deep-copied with the model)
    if not isinstance(weighting, GradientWeighting):
        scaler.scale(out.total * factor if factor != 1.0 else out.total).backward()
        return
    present = [n for n in composer.tasks if bool(masks[n].any()) and out.per_task[n].requires_grad]
    if not present:
        return
    own = _task_parameters(model)
    own_ids = {id(p) for p in own}
    if weighting.level == "rep":
        if shared_rep is None:
            raise RunError(f"loss strategy {composer.strategy!r} combines gradients of the shared representation, "
                           "which this model's trunk does not expose (see mtl_core/model/sharing.py); use "
                           "the parameter-level method")
        targets: list[torch.Tensor] = [shared_rep]
    else:
        targets = [p for p in model.parameters() if p.requires_grad and id(p) not in own_ids]
    if not targets:  # nothing shared is trained: the plain sum is every method's answer
        scaler.scale(out.total * factor).backward()
        return
    _combine_into(out, present, targets, own, weighting, scaler, factor)


def _combine_into(out: LossOutput, present: list[str], targets: list[torch.Tensor], own: list[nn.Parameter],
                  weighting: GradientWeighting, scaler: torch.amp.GradScaler, factor: float) -> None:
    """Per-task gradients of ``targets`` (shared parameters or representation) combined; ``own`` summed."""
    scale = float(scaler.get_scale()) if scaler.is_enabled() else 1.0
    rows, own_sum = [], None
    for name in present:
        grads = torch.autograd.grad(scaler.scale(out.per_task[name]), targets + own, retain_graph=True,
                                    allow_unused=True)
        rows.append(_flat(grads[:len(targets)], targets) / scale)
        mine = grads[len(targets):]
        own_sum = list(mine) if own_sum is None else [a if b is None else (b if a is None else a + b)
                                                      for a, b in zip(own_sum, mine, strict=True)]
    _add_grad(own, [None if g is None else g * factor for g in own_sum or []])
    grads = torch.stack(rows)  # (T, P), unscaled
    reaches = grads.norm(dim=1) > 0  # a task that does not reach the shared part (a heatmap head) takes no part
    if not bool(reaches.any()):
        return
    names = [n for n, r in zip(present, reaches.tolist(), strict=True) if r]
    losses = torch.stack([out.per_task[n].detach().float() for n in names])
    if bool(torch.isfinite(grads).all()):
        result = weighting.combine(grads[reaches], losses, names)
        direction = result.direction
        out.weights.update({n: float(w) for n, w in zip(names, result.weights.tolist(), strict=True)})
    else:  # an fp16 overflow: pass the non-finite sum on, so the scaler skips the step and lowers its scale
        direction = grads[reaches].sum(dim=0)
    direction = direction * (scale * factor)
    if isinstance(targets[0], nn.Parameter) or targets[0].is_leaf:
        _add_grad(targets, _split(direction, targets))
    else:  # the representation: carry the direction down into the shared parameters (autograd adds to .grad)
        torch.autograd.backward(targets, _split(direction, targets))
