"""Tests for mtl_core.train.optim: parameter groups, the warm-up + cosine schedule, gradient accumulation and
clipping."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.config import TrainConfig
from mtl_core.data import Records, TensorData
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.tasks import BinaryTask, RegressionTask
from mtl_core.train import LossComposer, Trainer
from mtl_core.train.optim import BASE_LR, Stepper, create_optimiser, lr_factor, param_groups


def test_warm_up_then_cosine_decay_to_zero():
    total, warmup = 20, 4
    factors = [lr_factor(step, total, warmup, "cosine") for step in range(total)]
    assert factors[:warmup] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[warmup + (total - warmup) // 2] == pytest.approx(0.5)  # half-way down the cosine
    assert all(a > b for a, b in zip(factors[warmup:], factors[warmup + 1:], strict=False))  # decreasing
    assert lr_factor(total, total, warmup, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert [lr_factor(s, total, 0, "constant") for s in (0, 10, 19)] == [1.0, 1.0, 1.0]


def _model(make_fusion, **fusion_options) -> tuple[MultiTaskModel, LossComposer]:
    fusion = make_fusion(["test_resnet", "test_efficientnet"], frozen=False, **fusion_options)
    tasks = [BinaryTask("flag")]
    model = MultiTaskModel(fusion, ResidualSharedTrunk(fusion.num_features, hidden=8, depth=1), tasks)
    return model, LossComposer(tasks, "uncertainty")


def test_pretrained_backbones_learn_at_a_fraction_random_ones_at_the_full_rate(make_fusion):
    model, composer = _model(make_fusion)
    first = model.fusion.backbones[0]
    first.info = dataclasses.replace(first.info, weights="pretrained")  # as if loaded from a weights file
    settings = TrainConfig(lr=1e-3, backbone_lr_scale=0.1, weight_decay=0.05, optimizer="adamw")
    optimiser = create_optimiser(model, composer, settings)
    assert isinstance(optimiser, torch.optim.AdamW)
    rate = {id(p): (g["lr"], g[BASE_LR], g["weight_decay"]) for g in optimiser.param_groups for p in g["params"]}
    assert len(rate) == sum(p.requires_grad for p in [*model.parameters(), *composer.parameters()])  # all, once
    kernel, bias = (next(p for p in first.parameters() if p.ndim == k) for k in (4, 1))
    assert rate[id(kernel)] == pytest.approx((1e-4, 1e-4, 0.05))  # pretrained backbone: lr x 0.1, decayed
    assert rate[id(bias)] == pytest.approx((1e-4, 1e-4, 0.0))  # biases and norms: no decay
    assert rate[id(next(model.fusion.backbones[1].parameters()))][0] == pytest.approx(1e-3)  # random: full rate
    trunk = next(p for p in model.trunk.parameters() if p.ndim == 2)
    assert rate[id(trunk)] == pytest.approx((1e-3, 1e-3, 0.05))
    assert [rate[id(p)][0] for p in composer.parameters()] == pytest.approx([1e-3] * len(list(composer.parameters())))


def test_a_tasks_lr_scale_gives_its_head_a_faster_rate():
    tasks = [RegressionTask("size"), RegressionTask("fast")]
    tasks[1].lr_scale = 4.0  # as a point task's new head asks
    model = MultiTaskModel(None, ResidualSharedTrunk(6, hidden=8, depth=1), tasks)
    groups = param_groups(model, LossComposer(tasks), TrainConfig(lr=0.01))
    rates = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert [rates[id(p)] for p in model.heads["fast"].parameters()] == pytest.approx([0.04, 0.04])
    assert [rates[id(p)] for p in model.heads["size"].parameters()] == pytest.approx([0.01, 0.01])


def _sgd_stepper(**settings) -> tuple[nn.Parameter, Stepper]:
    weight = nn.Parameter(torch.zeros(4))
    optimiser = torch.optim.SGD([{"params": [weight], "lr": 1.0, BASE_LR: 1.0}], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return weight, Stepper(optimiser, scaler, TrainConfig(**({"epochs": 2} | settings)))


def test_the_schedule_sets_each_steps_rate_from_the_epoch_and_step():
    weight, stepper = _sgd_stepper(warmup_epochs=1, schedule="cosine")
    seen = []
    for epoch in range(2):
        stepper.begin_epoch(epoch, batches=4)
        for _ in range(4):
            weight.grad = torch.ones(4)
            stepper.after_backward()
            seen.append(stepper.optimiser.param_groups[0]["lr"])
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, *cosine])
    assert float(weight.detach()[0]) == pytest.approx(-sum(seen))  # SGD with gradient 1: each step moves by its rate


def test_accumulated_gradients_are_averaged_and_an_epochs_last_batches_still_step():
    weight, stepper = _sgd_stepper(accumulate=2)
    stepper.begin_epoch(0, batches=3)
    for grad in (1.0, 3.0, 5.0):  # steps after (1 + 3) / 2 and after the lone last batch, 5
        weight.grad = (weight.grad if weight.grad is not None else 0) + torch.full((4,), grad)
        stepper.after_backward()
    assert weight.detach().tolist() == pytest.approx([-7.0] * 4)
    assert weight.grad is None  # nothing carried into the next epoch


def test_gradient_clipping_bounds_the_step():
    weight, stepper = _sgd_stepper(grad_clip=0.5)
    stepper.begin_epoch(0, batches=1)
    weight.grad = torch.full((4,), 10.0)
    stepper.after_backward()
    assert float(weight.detach().norm()) == pytest.approx(0.5, rel=1e-5)


def _records(n: int, seed: int) -> tuple[torch.Tensor, Records]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    targets = {"flag": (x[:, 0] > 0).astype(float), "size": 3.0 * x[:, 1] + 1.0}
    return torch.from_numpy(x), Records([f"c{i}" for i in range(n)], [Path(f"c{i}") for i in range(n)], targets)


def _fit(batch_size: int, accumulate: int) -> list[torch.Tensor]:
    tasks = [BinaryTask("flag"), RegressionTask("size")]
    x, records = _records(32, seed=0)
    for task in tasks:
        task.fit(records.targets[task.name])
    torch.manual_seed(0)
    model = MultiTaskModel(None, ResidualSharedTrunk(6, hidden=16, depth=1, dropout=0.0), tasks)
    settings = TrainConfig(epochs=2, batch_size=batch_size, accumulate=accumulate, lr=1e-2, device="cpu")
    Trainer(model, LossComposer(tasks), settings).fit(TensorData.build(x, records, tasks))
    return [p.detach().clone() for p in model.parameters()]


def test_accumulating_two_half_batches_trains_as_one_full_batch():
    full, halves = _fit(batch_size=16, accumulate=1), _fit(batch_size=8, accumulate=2)
    for a, b in zip(full, halves, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(a, b) for a, b in zip(full, _fit(batch_size=8, accumulate=1), strict=True))
