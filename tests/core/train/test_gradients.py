"""Properties of mtl_core.train.gradients over the whole WEIGHTINGS registry: masks respected (an unlabelled task or
a masked-out label contributes nothing), finite gradients, loss scaling undone before methods combine, gradients
added (so accumulation works). Resume is bit-identical for every name (tests/reliability/test_checkpoint.py)."""

from __future__ import annotations

import pytest
import torch

from mtl_core.config import TrainConfig
from mtl_core.data import TensorData
from mtl_core.distributed import Parallel
from mtl_core.errors import RunError
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.train import WEIGHTINGS, GradientWeighting, LossComposer, Trainer
from mtl_core.train.gradients import backward
from tests.core.train.test_losses import WIDTH, _batch, _tasks

GRADIENT_METHODS = [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GradientWeighting)]


class _NoScaler:
    def is_enabled(self) -> bool:
        return False

    def scale(self, x):
        return x


class _FixedScaler(_NoScaler):
    """A loss scaler of fp16 training, frozen at ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.value

    def scale(self, x):
        return x * self.value


def _gradients(strategy: str, unlabelled=(), garbage: float = 0.0, scaler=None, repeats: int = 1):
    """Every parameter's .grad after ``repeats`` backward calls on one batch (a fresh model and method)."""
    tasks = _tasks()
    features, targets, masks = _batch(tasks, unlabelled=unlabelled)
    targets = {n: t.where(masks[n], torch.full_like(t, garbage)) for n, t in targets.items()}  # masked-out labels
    torch.manual_seed(0)
    model = MultiTaskModel(None, ResidualSharedTrunk(WIDTH, hidden=16, depth=1, dropout=0.0), tasks)
    composer = LossComposer(tasks, strategy)
    for _ in range(repeats):
        out = composer(model.forward_features(features), targets, masks)
        backward(out, masks, model, composer, scaler or _NoScaler())
    return {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}, out


@pytest.mark.parametrize("strategy", WEIGHTINGS.names())
def test_masked_labels_and_unlabelled_tasks_contribute_nothing(strategy):
    first, out = _gradients(strategy, unlabelled=("size",), garbage=0.0)
    again, _ = _gradients(strategy, unlabelled=("size",), garbage=1e3)  # other values where nothing is labelled
    assert out.weights["size"] == 0.0
    for name, grad in first.items():
        if name.startswith("heads.size."):
            assert grad is None or not bool(grad.any()), name
            continue
        assert grad is not None and bool(torch.isfinite(grad).all()), name
        torch.testing.assert_close(grad, again[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", GRADIENT_METHODS)
def test_methods_combine_unscaled_gradients_and_the_result_is_scaled_back(strategy):
    plain, _ = _gradients(strategy)
    scaled, _ = _gradients(strategy, scaler=_FixedScaler(1024.0))
    for name, grad in plain.items():  # Nash-MTL, MGDA, ... are not scale-equivariant: this fails if they saw S*g
        torch.testing.assert_close(scaled[name] / 1024.0, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("strategy", ["static", "mgda", "nash_mtl_rep"])
def test_gradients_are_added_so_that_micro_batches_accumulate(strategy):
    once, _ = _gradients(strategy)
    twice, _ = _gradients(strategy, repeats=2)
    for name, grad in once.items():
        torch.testing.assert_close(twice[name], 2 * grad, rtol=1e-5, atol=1e-7)


def test_a_representation_method_needs_a_trunk_that_exposes_its_representation():
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    model = MultiTaskModel(None, ResidualSharedTrunk(WIDTH, hidden=8, depth=1), tasks)
    composer = LossComposer(tasks, "mgda_ub")
    out = composer(model.forward_features(features), targets, masks)
    model.trunk.last_shared = None  # what a trunk without a shared representation leaves
    with pytest.raises(RunError, match="shared representation"):
        backward(out, masks, model, composer, _NoScaler())


@pytest.mark.parametrize("strategy", ["pcgrad", "nash_mtl_rep"])
def test_a_gradient_method_is_refused_under_ddp_but_trains_in_one_process_of_a_process_group(strategy):
    """Per-task autograd.grad bypasses DDP's all-reduce: refused when the model is trained by several processes.
    Rank 0 training alone on cached features (a frozen torchrun run) is one process: it trains."""
    tasks = _tasks()
    features, targets, masks = _batch(tasks)
    data = TensorData(features, targets, masks, [f"c{i}" for i in range(len(features))], True)
    torch.manual_seed(0)
    model = MultiTaskModel(None, ResidualSharedTrunk(WIDTH, hidden=16, depth=1, dropout=0.0), tasks)
    settings = TrainConfig(epochs=1, batch_size=4, device="cpu")
    with pytest.raises(RunError, match=f"loss.strategy '{strategy}' combines per-task gradients, which a distributed"):
        Trainer(model, LossComposer(tasks, strategy), settings, parallel=Parallel(rank=0, world=2)).fit(data)
    history = Trainer(model, LossComposer(tasks, strategy), settings, parallel=Parallel()).fit(data)
    assert len(history.train) == 1
