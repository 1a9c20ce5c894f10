"""Tests for mtl_core.tasks and mtl_core.metrics: masking, losses by hand, normalisation, baselines, golden metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_core import metrics as M
from mtl_core.data import Records
from mtl_core.errors import DataError, MTLError
from mtl_core.tasks import BinaryTask, ClassificationTask, RegressionTask, Task, task_from_schema

NAN = float("nan")

# One case per task kind: a factory, training labels (NaN = missing), and values that may sit under a False mask.
KINDS = {
    "classification": (lambda: ClassificationTask("lesion", classes=["benign", "malignant", "none"],
                                                  label_smoothing=0.1),
                       [0, 2, NAN, 1, NAN, 2, 2], [1, 1e9, -3]),
    "binary": (lambda: BinaryTask("nodule", pos_weight=3.0), [1, 0, NAN, 1, NAN, 0, 0], [1, 7e8, -1]),
    "regression_mse": (lambda: RegressionTask("size", unit="mm"), [12.5, 30.0, NAN, 7.0, NAN, 22.0, 9.0],
                       [1e30, -1e12, 0.0]),
    "regression_l1": (lambda: RegressionTask("size", unit="mm", loss_name="l1"),
                      [12.5, 30.0, NAN, 7.0, NAN, 22.0, 9.0], [1e30, -1e12, 0.0]),
    "regression_huber": (lambda: RegressionTask("size", unit="mm", loss_name="huber", normalize="minmax"),
                         [12.5, 30.0, NAN, 7.0, NAN, 22.0, 9.0], [1e30, -1e12, 0.0]),
}


def _outputs(task: Task, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, task.out_features, generator=generator).requires_grad_(True)


def _loss_and_grad(task: Task, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    loss = task.loss(output, target, mask)
    (grad,) = torch.autograd.grad(loss, output)
    return loss.detach(), grad


def _records(values: np.ndarray, mask: np.ndarray | None, name: str) -> Records:
    n = len(values)
    return Records(ids=[f"c{i}" for i in range(n)], paths=[Path(f"c{i}.png") for i in range(n)],
                   targets={name: np.array(values, dtype=np.float64)},
                   masks={} if mask is None else {name: mask})


# ---- masked labels --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_masked_labels_never_change_loss_gradient_or_metrics(kind):
    """Through the public path (Records with explicit masks -> fit -> encode -> loss / evaluate), whatever value a
    masked case carries -- another class, a huge number -- the loss, its gradient and every metric are unchanged."""
    factory, labels, garbage = KINDS[kind]
    labels = np.array(labels, dtype=np.float64)
    mask = ~np.isnan(labels)
    results = []
    for fill in [NAN, *garbage]:
        task = factory()
        records = _records(np.where(mask, labels, fill), mask, task.name)
        records.validate([task])
        values = records.targets[task.name]
        task.fit(values)
        target, encoded_mask = task.encode(values)
        output = _outputs(task, len(values))
        loss, grad = _loss_and_grad(task, output, target, encoded_mask)
        prediction = task.decode(output.detach())
        results.append((loss, grad, task.evaluate(values, prediction), encoded_mask))
    first = results[0]
    assert torch.equal(first[3], torch.from_numpy(mask))
    for loss, grad, evaluation, _ in results[1:]:
        assert torch.equal(loss, first[0])
        assert torch.equal(grad, first[1])
        assert evaluation == first[2]


# Values a hand-built batch may hold under a False mask. The batch contract only says "mask False = unlabelled";
# NaN is the engine's own "missing" marker, and an unencoded class column easily carries -1.
BATCH_CASES = [
    pytest.param("classification", 2, id="classification-other_class"),
    pytest.param("binary", 1.0, id="binary-flipped"),
    pytest.param("regression_mse", 1e30, id="regression-huge"),
    pytest.param("classification", 10**6, id="classification-huge_index"),
    pytest.param("classification", -1, id="classification-minus_one"),
    pytest.param("binary", NAN, id="binary-nan"),
    pytest.param("regression_mse", NAN, id="regression-nan"),
    pytest.param("regression_mse", float("inf"), id="regression-inf"),
]


@pytest.mark.parametrize(("kind", "fill"), BATCH_CASES)
def test_masked_targets_in_a_batch_never_reach_loss_or_gradient(kind, fill):
    """A batch built by hand ({"targets", "mask"}) may hold anything under a False mask: same loss, same gradient."""
    factory, labels, _ = KINDS[kind]
    task = factory()
    labels = np.array(labels, dtype=np.float64)
    task.fit(labels)
    target, mask = task.encode(labels)
    output = _outputs(task, len(labels))
    loss, grad = _loss_and_grad(task, output, target, mask)
    dirty = target.clone()
    dirty[~mask] = fill
    dirty_loss, dirty_grad = _loss_and_grad(task, output, dirty, mask)
    assert torch.equal(dirty_loss, loss)
    assert torch.isfinite(dirty_grad).all()
    assert torch.equal(dirty_grad, grad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_batch_without_labels_gives_exactly_zero_loss_and_finite_gradient(kind, batch):
    factory, labels, _ = KINDS[kind]
    task = factory()
    task.fit(np.array(labels, dtype=np.float64))
    target, mask = task.encode(np.full(batch, NAN))
    assert not mask.any()
    output = _outputs(task, batch)
    loss, grad = _loss_and_grad(task, output, target, mask)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert torch.isfinite(grad).all() and not grad.any()


@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_the_mean_over_labelled_cases_only(kind):
    """Adding unlabelled cases to a batch changes nothing: the mean is not diluted by masked cases."""
    factory, labels, _ = KINDS[kind]
    task = factory()
    labels = np.array(labels, dtype=np.float64)
    task.fit(labels)
    target, mask = task.encode(labels)
    output = _outputs(task, len(labels)).detach()
    only_labelled = task.loss(output[mask], target[mask], torch.ones(int(mask.sum()), dtype=torch.bool))
    torch.testing.assert_close(task.loss(output, target, mask), only_labelled)


# ---- losses by hand ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_the_smoothed_one_hot_cross_entropy(eps):
    """Eq. 6: the target distribution is (1 - eps) * one_hot + eps / K."""
    task = ClassificationTask("lesion", classes=["a", "b", "c", "d"], label_smoothing=eps)
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 1, 2, 0])
    mask = torch.tensor([True, True, False, True, True, False])
    smoothed = (1 - eps) * F.one_hot(target, 4).double() + eps / 4
    per_case = -(smoothed * torch.log_softmax(logits, dim=1)).sum(dim=1)
    expected = per_case[mask].mean()
    torch.testing.assert_close(task.loss(logits, target, mask).double(), expected, rtol=1e-6, atol=1e-7)


def test_binary_loss_matches_weighted_log_loss_by_hand():
    task = BinaryTask("nodule", pos_weight=3.0)
    logits = torch.tensor([[2.0], [-1.0], [0.5], [0.0]])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.tensor([True, True, True, False])
    p = torch.sigmoid(logits.reshape(-1))
    per_case = -(3.0 * target * torch.log(p) + (1 - target) * torch.log(1 - p))
    torch.testing.assert_close(task.loss(logits, target, mask), per_case[:3].mean())


# ---- regression normalisation --------------------------------------------------------------------------------

TRAIN_MM = np.array([10.0, 20.0, NAN, 30.0, 40.0, NAN])


@pytest.mark.parametrize(("normalize", "expected"), [
    ("standardize", (np.array([10.0, 20.0, 30.0, 40.0]) - 25.0) / np.std([10.0, 20.0, 30.0, 40.0])),
    ("minmax", np.array([0.0, 1 / 3, 2 / 3, 1.0])),
    ("none", np.array([10.0, 20.0, 30.0, 40.0])),
])
def test_regression_normalisation_is_fit_on_training_labels_and_decodes_to_units(normalize, expected):
    task = RegressionTask("size", unit="mm", normalize=normalize)
    task.fit(TRAIN_MM)
    target, mask = task.encode(TRAIN_MM)
    np.testing.assert_allclose(target[mask].numpy(), expected, rtol=1e-6, atol=1e-6)
    # decode(head output) is in millimetres again, also for values the training set never saw
    test_mm = np.array([5.0, 27.5, 61.0])
    encoded, _ = task.encode(test_mm)
    np.testing.assert_allclose(task.decode(encoded.reshape(-1, 1)), test_mm, rtol=1e-5)


def test_regression_errors_are_reported_in_units_and_scaled_by_the_training_range():
    task = RegressionTask("size", unit="mm")
    task.fit(TRAIN_MM)  # range 10..40 mm
    truth = np.array([12.0, NAN, 33.0, 18.0])
    encoded, _ = task.encode(np.array([14.0, 0.0, 35.0, 20.0]))  # every labelled case 2 mm too large
    result = task.evaluate(truth, task.decode(encoded.reshape(-1, 1)))
    assert result["n"] == 3
    assert result["metrics"]["mae"] == pytest.approx(2.0, rel=1e-5)
    assert result["metrics"]["rmse"] == pytest.approx(2.0, rel=1e-5)
    assert result["metrics"]["mae_scaled"] == pytest.approx(2.0 / 30.0, rel=1e-5)


# ---- baselines -----------------------------------------------------------------------------------------------


def test_classification_baseline_is_the_training_majority_class():
    task = ClassificationTask("lesion", classes=["a", "b", "c"])
    task.fit(np.array([2, 2, 1, NAN, NAN, NAN, 0, 2]))  # majority of labelled cases: class 2
    test = np.array([0.0, 0.0, 0.0, 2.0, NAN])  # the test split's own majority (0) must not leak in
    result = task.evaluate(test, np.zeros(5))
    np.testing.assert_array_equal(task.baseline_prediction(3), [2.0, 2.0, 2.0])
    assert result["baseline"]["accuracy"] == pytest.approx(0.25)
    assert result["metrics"]["accuracy"] == pytest.approx(0.75)


def test_binary_baseline_is_the_training_majority():
    task = BinaryTask("nodule")
    task.fit(np.array([1, 1, 0, NAN, 1]))
    np.testing.assert_array_equal(task.baseline_prediction(2), [1.0, 1.0])
    task.fit(np.array([0, 0, 1, NAN]))
    np.testing.assert_array_equal(task.baseline_prediction(2), [0.0, 0.0])


def test_regression_baseline_is_the_training_mean():
    task = RegressionTask("size", unit="mm")
    task.fit(TRAIN_MM)
    np.testing.assert_array_equal(task.baseline_prediction(2), [25.0, 25.0])
    result = task.evaluate(np.array([20.0, 35.0, NAN]), np.array([20.0, 35.0, 0.0]))
    assert result["metrics"]["mae"] == 0.0
    assert result["baseline"]["mae"] == pytest.approx(7.5)


# ---- checks and schema ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "values", "words"), [
    (ClassificationTask("lesion", classes=["a", "b"]), [0, 2], ["class index 2", "0..1"]),
    (ClassificationTask("lesion", classes=["a", "b"]), [0, 0.5], ["class index 0.5"]),
    (BinaryTask("nodule"), [0, 2], ["not 0 or 1"]),
    (RegressionTask("size"), [1.0, float("inf")], ["infinite", "NaN"]),
    (RegressionTask("size"), [[1.0, 2.0]], ["1-D"]),
])
def test_impossible_targets_are_a_data_error_naming_the_task(task, values, words):
    with pytest.raises(DataError, match=task.name) as info:
        task.validate(np.array(values, dtype=np.float64), " in data/x.csv")
    for word in [*words, "data/x.csv"]:
        assert word in str(info.value)


@pytest.mark.parametrize("build", [
    lambda: ClassificationTask("Lesion", classes=["a", "b"]),
    lambda: ClassificationTask("lesion", classes=["a"]),
    lambda: ClassificationTask("lesion", classes=["a", "a"]),
    lambda: ClassificationTask("lesion", classes=["a", "b"], label_smoothing=1.0),
    lambda: BinaryTask("2nd"),
    lambda: RegressionTask("size", weight=-1.0),
    lambda: RegressionTask("size", loss_name="mae"),
    lambda: RegressionTask("size", normalize="zscore"),
])
def test_invalid_task_settings_raise_mtl_error(build):
    with pytest.raises(MTLError):
        build()


@pytest.mark.parametrize("kind", KINDS)
def test_schema_round_trip_predicts_the_same(kind):
    """``mtl predict`` rebuilds fitted tasks from JSON: same decoding, same baseline."""
    factory, labels, _ = KINDS[kind]
    task = factory()
    task.fit(np.array(labels, dtype=np.float64))
    rebuilt = task_from_schema(task.describe())
    output = _outputs(task, 7).detach()
    assert type(rebuilt) is type(task)
    np.testing.assert_array_equal(rebuilt.decode(output), task.decode(output))
    np.testing.assert_array_equal(rebuilt.baseline_prediction(3), task.baseline_prediction(3))
    assert rebuilt.describe() == task.describe()


# ---- metrics: golden values on hand-made arrays --------------------------------------------------------------

# truth [0 0 0 1 1 2], prediction [0 0 1 1 2 2]: per-class F1 = 4/5, 2/4, 2/3 with supports 3, 2, 1
GOLDEN_CLASSES = (np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]))


def test_accuracy_golden():
    assert M.accuracy(*GOLDEN_CLASSES) == pytest.approx(4 / 6)
    assert M.accuracy(np.array([1, 1]), np.array([1, 1])) == 1.0


def test_f1_macro_golden():
    assert M.f1_macro(*GOLDEN_CLASSES) == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)


def test_f1_weighted_golden():
    assert M.f1_weighted(*GOLDEN_CLASSES) == pytest.approx((3 * 4 / 5 + 2 * 2 / 4 + 1 * 2 / 3) / 6)


def test_f1_counts_a_predicted_class_absent_from_truth_like_scikit_learn():
    truth, prediction = np.array([0, 0]), np.array([0, 1])
    assert M.f1_macro(truth, prediction) == pytest.approx((2 / 3 + 0.0) / 2)
    assert M.f1_weighted(truth, prediction) == pytest.approx(2 / 3)


def test_binary_f1_golden():
    assert M.binary_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert M.binary_f1(np.array([0, 0]), np.array([0, 0])) == 0.0


def test_regression_errors_golden():
    out = M.regression_errors(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]), value_range=4.0)
    assert out == pytest.approx({"mse": 5 / 3, "mae": 1.0, "rmse": math.sqrt(5 / 3), "mse_scaled": 5 / 48,
                                 "mae_scaled": 0.25})


@pytest.mark.parametrize("metric", [M.accuracy, M.f1_macro, M.f1_weighted, M.binary_f1])
def test_metrics_of_no_cases_are_nan(metric):
    assert math.isnan(metric(np.array([]), np.array([])))


def test_classification_score_uses_the_golden_metrics():
    task = ClassificationTask("lesion", classes=["a", "b", "c"])
    assert task.score(*GOLDEN_CLASSES) == pytest.approx(
        {"accuracy": 4 / 6, "f1_macro": (4 / 5 + 2 / 4 + 2 / 3) / 3, "f1_weighted": (2.4 + 1 + 2 / 3) / 6})


def test_refitting_a_regression_task_updates_its_error_range():
    task = RegressionTask("size", unit="mm")
    task.fit(np.array([0.0, 10.0]))
    task.fit(np.array([0.0, 100.0]))
    assert task.evaluate(np.array([50.0]), np.array([60.0]))["metrics"]["mae_scaled"] == pytest.approx(0.1)
