"""Tests for mtl_core.train.losses: every registered weighting strategy, the composed total, and unknown names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.tasks import BinaryTask, ClassificationTask, RegressionTask
from mtl_core.train import WEIGHTINGS, LossComposer

STRATEGIES = WEIGHTINGS.names()
WIDTH = 12
NAN = float("nan")


def _tasks():
    return [ClassificationTask("lesion", classes=["a", "b", "c"], label_smoothing=0.1),
            BinaryTask("nodule", weight=0.5), RegressionTask("size", weight=2.0, unit="mm")]


def _batch(tasks, n: int = 8, unlabelled: tuple[str, ...] = (), seed: int = 0):
    """Features (n, WIDTH) and encoded targets/masks; tasks in ``unlabelled`` have no label in the batch."""
    rng = np.random.default_rng(seed)
    raw = {"lesion": rng.integers(0, 3, n).astype(float), "nodule": rng.integers(0, 2, n).astype(float),
           "size": rng.normal(20.0, 5.0, n)}
    raw["lesion"][::3] = NAN  # some missing labels everywhere
    targets, masks = {}, {}
    for task in tasks:
        values = np.full(n, NAN) if task.name in unlabelled else raw[task.name]
        task.fit(raw[task.name])
        targets[task.name], masks[task.name] = task.encode(values)
    return torch.from_numpy(rng.normal(size=(n, WIDTH)).astype(np.float32)), targets, masks


def _model(tasks):
    torch.manual_seed(0)
    return MultiTaskModel(None, ResidualSharedTrunk(WIDTH, hidden=16, depth=1, dropout=0.0), tasks)


@pytest.mark.parametrize("unlabelled", [(), ("size",), ("lesion", "nodule", "size")], ids=["all", "one", "none"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_weighting_gives_a_finite_total_and_gradients(strategy, unlabelled):
    tasks = _tasks()
    features, targets, masks = _batch(tasks, unlabelled=unlabelled)
    model, composer = _model(tasks), LossComposer(tasks, strategy)
    out = composer(model.forward_features(features), targets, masks)
    assert torch.isfinite(out.total)
    assert set(out.per_task) == set(out.weights) == {t.name for t in tasks}
    for name in unlabelled:
        assert out.per_task[name].item() == 0.0
    out.total.backward()
    grads = [p.grad for p in [*model.parameters(), *composer.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_weighting_trains_a_tiny_model_one_step(strategy):
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    model, composer = _model(tasks), LossComposer(tasks, strategy)
    params = [*model.parameters(), *composer.parameters()]
    before = [p.detach().clone() for p in params]
    optimiser = torch.optim.Adam(params, lr=1e-3)
    first = composer(model.forward_features(features), targets, masks)
    optimiser.zero_grad()
    first.total.backward()
    optimiser.step()
    after = composer(model.forward_features(features), targets, masks)
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(b, p) for b, p in zip(before, params, strict=True))
    assert after.total.item() < first.total.item()


def test_unknown_strategy_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError, match="Did you mean 'uncertainty'") as info:
        LossComposer(_tasks(), "uncertainity")
    assert all(name in str(info.value) for name in STRATEGIES)


def test_static_total_is_the_weighted_sum_of_task_losses():
    """Eq. 8: total = sum_t lambda_t * L_t with lambda_t from each task's weight."""
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    out = LossComposer(tasks, "static")(_model(tasks).forward_features(features), targets, masks)
    assert out.weights == {"lesion": 1.0, "nodule": 0.5, "size": 2.0}
    expected = out.per_task["lesion"] + 0.5 * out.per_task["nodule"] + 2.0 * out.per_task["size"]
    torch.testing.assert_close(out.total, expected)


def test_equal_weighting_ignores_task_weights():
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    out = LossComposer(tasks, "equal")(_model(tasks).forward_features(features), targets, masks)
    assert out.weights == {"lesion": 1.0, "nodule": 1.0, "size": 1.0}
    torch.testing.assert_close(out.total, sum(out.per_task.values()))


def test_uncertainty_weighting_follows_kendall_et_al():
    """total = sum_t exp(-s_t) * L_t + s_t, with s_t learnable."""
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    composer = LossComposer(tasks, "uncertainty")
    log_vars = torch.tensor([0.5, -0.2, 1.0])
    with torch.no_grad():
        composer.weighting.log_vars.copy_(log_vars)
    out = composer(_model(tasks).forward_features(features), targets, masks)
    losses = torch.stack([out.per_task[t.name] for t in tasks])
    torch.testing.assert_close(out.total, (torch.exp(-log_vars) * losses + log_vars).sum())
    assert out.weights["size"] == pytest.approx(math.exp(-1.0))
    out.total.backward()
    assert composer.weighting.log_vars.grad is not None and composer.weighting.log_vars.grad.abs().sum() > 0


def test_dwa_weights_follow_the_rate_of_descent_and_survive_a_state_dict():
    tasks = _tasks()
    composer = LossComposer(tasks, "dwa")
    dummy = {t.name: torch.tensor(1.0) for t in tasks}
    composer.weighting.end_epoch({"lesion": 1.0, "nodule": 1.0, "size": 1.0})
    assert {n: float(w) for n, w in composer.weighting(dummy).items()} == {"lesion": 1.0, "nodule": 1.0, "size": 1.0}
    composer.weighting.end_epoch({"lesion": 0.5, "nodule": 1.0, "size": 2.0})
    ratios = np.array([0.5, 1.0, 2.0]) / 2.0  # r_t / temperature
    expected = 3 * np.exp(ratios) / np.exp(ratios).sum()
    weights = composer.weighting(dummy)
    np.testing.assert_allclose([float(weights[t.name]) for t in tasks], expected, rtol=1e-6)
    assert weights["size"] > weights["nodule"] > weights["lesion"]  # the slowest task gets the most weight
    resumed = LossComposer(tasks, "dwa")
    resumed.load_state_dict(composer.state_dict())
    assert {n: float(w) for n, w in resumed.weighting(dummy).items()} == {n: float(w) for n, w in weights.items()}


def test_uncertainty_of_a_task_without_labels_in_the_batch_does_not_move():
    tasks = _tasks()
    features, targets, masks = _batch(tasks, unlabelled=("size",))
    composer = LossComposer(tasks, "uncertainty")
    composer(_model(tasks).forward_features(features), targets, masks).total.backward()
    assert composer.weighting.log_vars.grad[2].item() == 0.0
