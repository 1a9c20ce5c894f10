"""Tests for mtl_core.model.sharing: the sharing architectures by name, their shapes, their task parameters, and
gradient methods over them."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.model import ARCHITECTURES, MultiTaskModel, ResidualSharedTrunk, create_trunk
from mtl_core.train import LossComposer
from mtl_core.train.gradients import backward
from tests.core.train.test_gradients import _NoScaler
from tests.core.train.test_losses import WIDTH, _batch, _tasks

TASKS = ["lesion", "nodule", "size"]
OPTIONS = {"hidden": 16, "depth": 1, "dropout": 0.0, "experts": 3, "adapter_width": 4}


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_builds_by_name_and_gives_each_task_its_vector(name):
    torch.manual_seed(0)
    trunk = create_trunk(WIDTH, TASKS, {"architecture": name, **OPTIONS})
    out = trunk(torch.randn(5, WIDTH))
    views = out if isinstance(out, dict) else {t: out for t in TASKS}
    assert {t: tuple(v.shape) for t, v in views.items()} == {t: (5, 16) for t in TASKS}
    assert trunk.in_features == WIDTH and trunk.out_features == 16
    assert trunk.settings.get("architecture", "residual") == name
    assert trunk.last_shared is not None  # a training forward exposes the shared representation


def test_an_unknown_architecture_names_the_available_ones():
    with pytest.raises(ConfigError, match="Did you mean 'mmoe'.*Available: adapters, mmoe, residual"):
        create_trunk(WIDTH, TASKS, {"architecture": "mmeo"})


def test_adapters_start_as_the_residual_trunk():
    torch.manual_seed(0)
    adapters = create_trunk(WIDTH, TASKS, {"architecture": "adapters", **OPTIONS})
    torch.manual_seed(0)
    plain = ResidualSharedTrunk(WIDTH, hidden=16, depth=1, dropout=0.0)
    x = torch.randn(4, WIDTH)
    for view in adapters(x).values():
        torch.testing.assert_close(view, plain(x))


def test_mmoe_gates_mix_the_experts_with_softmax_weights():
    torch.manual_seed(0)
    trunk = create_trunk(WIDTH, TASKS, {"architecture": "mmoe", **OPTIONS})
    x = torch.randn(4, WIDTH)
    out = trunk(x)
    experts = trunk.last_shared  # (B, K, H)
    h = trunk.fc1(x)
    for task in TASKS:
        gate = torch.softmax(trunk.gates[task](h), dim=1)  # (B, K), rows sum to 1
        torch.testing.assert_close(out[task], torch.einsum("bk,bkh->bh", gate, experts))


@pytest.mark.parametrize("strategy", ["pcgrad", "mgda_ub"])
def test_a_task_parameter_takes_only_its_own_tasks_gradient(strategy):
    tasks = _tasks()
    features, targets, masks = _batch(tasks, unlabelled=("size",))
    torch.manual_seed(0)
    model = MultiTaskModel(None, create_trunk(WIDTH, TASKS, {"architecture": "mmoe", **OPTIONS}), tasks)
    composer = LossComposer(tasks, strategy)
    backward(composer(model.forward_features(features), targets, masks), masks, model, composer, _NoScaler())
    gate = model.trunk.gates
    assert gate["size"].weight.grad is None or not bool(gate["size"].weight.grad.any())  # unlabelled: nothing
    assert bool(gate["lesion"].weight.grad.any()) and bool(torch.isfinite(gate["lesion"].weight.grad).all())
    expert = next(model.trunk.experts[0].parameters())
    assert expert.grad is not None and bool(torch.isfinite(expert.grad).all()) and bool(expert.grad.any())
