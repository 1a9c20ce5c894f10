"""Closed-form checks of the gradient-level methods (mtl_core/train/methods/): each on a tiny problem whose
answer is worked out by hand in the comment beside it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.tasks import RegressionTask
from mtl_core.train import WEIGHTINGS, GradientWeighting, LossComposer
from mtl_core.train.methods._common import min_norm_weights

NAMES = ["a", "b"]


def _method(name: str, **options):
    return WEIGHTINGS.get(name)([RegressionTask(n) for n in NAMES], **options)


def _combine(name: str, grads, losses=(1.0, 1.0), **options):
    g = torch.tensor(grads, dtype=torch.float32)
    return _method(name, **options).combine(g, torch.tensor(losses), NAMES[:len(g)])


def _close(actual: torch.Tensor, expected) -> None:
    np.testing.assert_allclose(actual.double().numpy(), np.asarray(expected, dtype=float), atol=1e-5)


def test_pcgrad_projects_each_conflicting_gradient_on_the_others_normal_plane():
    # g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1. g1' = g1 + g2/2 = (0.5, 0.5); g2' = g2 + g1 = (0, 1). Sum (0.5, 1.5).
    _close(_combine("pcgrad", [[1.0, 0.0], [-1.0, 1.0]]).direction, [0.5, 1.5])
    _close(_combine("pcgrad", [[1.0, 0.0], [1.0, 1.0]]).direction, [2.0, 1.0])  # no conflict: the plain sum


def test_mgda_finds_the_min_norm_point_of_two_gradients():
    # g1 = (1, 0), g2 = (0, 2): min |w g1 + (1-w) g2|^2 = w^2 + 4 (1-w)^2 at w = 4/5 -> d = (0.8, 0.4).
    out = _combine("mgda", [[1.0, 0.0], [0.0, 2.0]])
    _close(out.weights, [0.8, 0.2])
    _close(out.direction, [0.8, 0.4])
    # one gradient inside the other's half-space past it: g2 = (2, 0) -> the vertex g1 itself.
    _close(_combine("mgda", [[1.0, 0.0], [2.0, 0.0]]).direction, [1.0, 0.0])


def test_the_frank_wolfe_solver_agrees_with_the_closed_form_for_three_tasks():
    # three orthonormal gradients: the min-norm point is their centroid, weights 1/3 each.
    np.testing.assert_allclose(min_norm_weights(np.eye(3)), [1 / 3] * 3, atol=1e-3)


def test_cagrad_on_an_orthogonal_pair_moves_along_the_mean_gradient():
    # g1 = (1, 0), g2 = (0, 1): g_w . g_0 = 1/2 for every w, |g_w| is least at w = (1/2, 1/2), so g_w = g_0 and
    # d = (g_0 + c g_0) / (1 + c^2) = g_0 * 1.4 / 1.16 for c = 0.4.
    out = _combine("cagrad", [[1.0, 0.0], [0.0, 1.0]], c=0.4)
    _close(out.direction, [0.5 * 1.4 / 1.16] * 2)
    # c = 0: plain gradient descent on the mean loss
    _close(_combine("cagrad", [[1.0, 0.0], [-0.5, 2.0]], c=0.0).direction, [0.25, 1.0])


def test_imtl_gives_equal_projections_on_every_unit_gradient():
    # g1 = (1, 0), g2 = (0, 2): d = a g1 + (1-a) g2 = (a, 2 - 2a) with d.u1 = d.u2 -> a = 2/3, d = (2/3, 2/3).
    out = _combine("imtl", [[1.0, 0.0], [0.0, 2.0]])
    _close(out.weights, [2 / 3, 1 / 3])
    _close(out.direction, [2 / 3, 2 / 3])


def test_gradnorm_raises_the_weight_of_the_task_with_the_smaller_gradient():
    # |g_a| = 1, |g_b| = 3, equal loss ratios: G = (1, 3), target = mean(G) = 2 -> w_a rises, w_b falls, sum 2.
    method = _method("gradnorm", lr=0.1)
    out = method.combine(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.tensor([1.0, 1.0]), NAMES)
    _close(out.direction, [1.0, 3.0])  # first step: weights 1
    w = method.task_weights
    # step = lr * sign(G - target) * |g| / mean|g| = 0.1 * (-1/2, +3/2): (1.05, 0.85), renormalised to sum 2.
    _close(w, np.array([1.05, 0.85]) * 2 / 1.9)
    assert float(w.sum()) == pytest.approx(2.0)


def test_gradnorm_favours_the_task_that_trains_slower():
    method = _method("gradnorm", lr=0.1, alpha=1.5)
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    method.combine(grads, torch.tensor([1.0, 1.0]), NAMES)  # L(0) = (1, 1)
    method.combine(grads, torch.tensor([0.5, 1.0]), NAMES)  # a halved its loss, b did not
    assert float(method.task_weights[1]) > float(method.task_weights[0])


def test_nash_mtl_on_an_orthogonal_pair_moves_each_task_by_its_unit_gradient():
    # K = diag(1, 4): K a = 1/a -> a = (1, 1/2), d = g1 + g2 / 2 = (1, 1); each task improves by g_t . d = 1/a_t.
    out = _combine("nash_mtl", [[1.0, 0.0], [0.0, 2.0]])
    _close(out.weights, [1.0, 0.5])
    _close(out.direction, [1.0, 1.0])


def test_nash_mtl_weights_solve_the_bargaining_equation_for_a_correlated_pair():
    g = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    a = _combine("nash_mtl", g.tolist()).weights.double()
    k = (g @ g.T).double()
    _close(k @ a, 1 / a)


def test_aligned_mtl_rescales_orthogonal_gradients_to_the_smallest_norm():
    # G G^T = diag(1, 4): B = sqrt(1) diag(1, 1/2), weights = column sums (1, 1/2), d = (1, 1).
    out = _combine("aligned_mtl", [[1.0, 0.0], [0.0, 2.0]])
    _close(out.weights, [1.0, 0.5])
    _close(out.direction, [1.0, 1.0])


def test_gradvac_with_a_zero_target_is_pcgrad_and_tracks_the_cosine():
    method = _method("gradvac", beta=0.5)
    out = method.combine(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), torch.ones(2), NAMES)
    _close(out.direction, [0.5, 1.5])  # the PCGrad answer above
    # the targets move half-way (beta 1/2) to the cosines measured: -1/sqrt(2) for each pair
    assert float(method.target[0, 1]) == pytest.approx(-0.5 / math.sqrt(2), abs=1e-6)


def test_rlw_weights_sum_to_the_number_of_labelled_tasks():
    method = _method("rlw")
    losses = {n: torch.tensor(1.0, requires_grad=True) for n in NAMES}
    draws = [method(losses) for _ in range(5)]
    for weights in draws:
        assert float(sum(weights.values())) == pytest.approx(2.0)
    assert len({round(float(d["a"]), 6) for d in draws}) > 1  # random: not the same weights every step


def test_famo_lowers_the_weight_of_the_task_that_improves_faster():
    method = _method("famo", lr=0.1)
    method({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    for step in range(1, 6):  # a's loss falls by half every step, b's stays
        weights = method({"a": torch.tensor(0.5 ** step), "b": torch.tensor(1.0)})
    logits = method.logits
    assert float(logits[0]) < float(logits[1])
    # weights z_t / (c L_t) make the weighted gradient of sum z log L: a with the tiny loss gets a large weight
    assert all(math.isfinite(float(w)) for w in weights.values())


@pytest.mark.parametrize("name", [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GradientWeighting)])
def test_every_gradient_method_gives_a_finite_direction_for_one_and_three_tasks(name):
    method = WEIGHTINGS.get(name)([RegressionTask(n) for n in ("a", "b", "c")])
    torch.manual_seed(0)
    for grads in (torch.randn(1, 5), torch.randn(3, 5)):
        out = method.combine(grads, torch.rand(len(grads)) + 0.1, ["a", "b", "c"][:len(grads)])
        assert out.direction.shape == (5,) and bool(torch.isfinite(out.direction).all())
        assert out.weights.shape == (len(grads),)


def test_an_unknown_method_names_the_available_ones():
    with pytest.raises(ConfigError, match="Did you mean 'pcgrad'.*Available:.*nash_mtl"):
        LossComposer([RegressionTask("a")], strategy="pcgard")
    with pytest.raises(ConfigError, match="c must be"):
        WEIGHTINGS.get("cagrad")([RegressionTask("a")], c=2.0)
