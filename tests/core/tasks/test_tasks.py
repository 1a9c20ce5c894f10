"""Tests for mtl_core.tasks.base and mtl_core.tasks.metrics: masking, losses by hand, normalisation, baselines, golden
metrics."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mtl_core.data import Records
from mtl_core.errors import DataError, MTLError
from mtl_core.tasks import (
    FIGURE_NAMES,
    TASK_KINDS,
    BinaryTask,
    ClassificationTask,
    RegressionTask,
    Task,
    TaskSchema,
    register_task_kind,
    task_from_schema,
)
from mtl_core.tasks import metrics as M
from tests.e2e.kind_fixture import ShiftTask  # registers two kinds the engine does not ship: count and shift

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


def test_balanced_accuracy_golden():
    """Mean recall over the classes present in the truth: 2/3, 1/2 and 1/1 for the golden arrays."""
    assert M.balanced_accuracy(*GOLDEN_CLASSES) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    truth = np.array([0] * 9 + [1])
    assert M.balanced_accuracy(truth, np.zeros(10)) == pytest.approx(0.5)  # the majority class: no better than chance
    assert M.accuracy(truth, np.zeros(10)) == pytest.approx(0.9)
    assert M.balanced_accuracy(np.array([2, 2]), np.array([2, 0])) == pytest.approx(0.5)  # absent classes don't count
    assert math.isnan(M.balanced_accuracy(np.array([]), np.array([])))


def test_classification_score_uses_the_golden_metrics():
    task = ClassificationTask("lesion", classes=["a", "b", "c"])
    assert task.score(*GOLDEN_CLASSES) == pytest.approx(
        {"accuracy": 4 / 6, "balanced_accuracy": (2 / 3 + 1 / 2 + 1) / 3, "f1_macro": (4 / 5 + 2 / 4 + 2 / 3) / 3,
         "f1_weighted": (2.4 + 1 + 2 / 3) / 6})


def test_binary_score_has_balanced_accuracy_and_a_majority_baseline_does_not_beat_it():
    task = BinaryTask("nodule")
    task.fit(np.array([0, 0, 0, 1]))
    result = task.evaluate(np.array([0, 0, 0, 1, NAN]), np.array([0, 0, 1, 1, 1]))
    assert result["metrics"]["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["baseline"]["balanced_accuracy"] == pytest.approx(0.5)
    assert result["unit"] == "" and result["n"] == 4


def test_refitting_a_regression_task_updates_its_error_range():
    task = RegressionTask("size", unit="mm")
    task.fit(np.array([0.0, 10.0]))
    task.fit(np.array([0.0, 100.0]))
    assert task.evaluate(np.array([50.0]), np.array([60.0]))["metrics"]["mae_scaled"] == pytest.approx(0.1)


# ---- the registry of task kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS.names())
def test_every_registered_kind_round_trips_through_its_schema(kind):
    """Every kind, built-in or registered by a plugin: describe() validates against its Schema, and
    task_from_schema rebuilds the same class with the same description."""
    cls = TASK_KINDS.get(kind)
    task = cls.example()
    assert task.kind == kind and cls.Schema.model_validate(task.describe()).kind == kind
    rebuilt = task_from_schema(task.describe())
    assert type(rebuilt) is cls and rebuilt.describe() == task.describe()
    assert set(cls.summary_metrics) | set(cls.beats_metrics) <= set(cls.higher_is_better)
    assert cls.section and cls.figure in (None, *FIGURE_NAMES)  # a figure that mtl_core.report.figures can draw


def test_registered_kinds_include_plugin_kinds_and_declare_their_display():
    assert {"binary", "classification", "regression", "count", "shift"} <= set(TASK_KINDS.names())
    assert ClassificationTask.beats_metrics == BinaryTask.beats_metrics == ("f1_macro", "balanced_accuracy")
    assert RegressionTask.beats_metrics == ("mae",) and RegressionTask.section == "regression"
    assert TASK_KINDS.get("count").section == "count"  # a kind without its own section value gets its kind's name


def test_a_second_class_under_a_registered_kind_raises_and_keeps_the_first():
    with pytest.raises(MTLError, match="task kind 'regression' is already registered"):

        @register_task_kind
        @dataclass
        class OtherRegression(RegressionTask):
            pass

    assert TASK_KINDS.get("regression") is RegressionTask


def test_the_same_class_imported_twice_replaces_itself(monkeypatch):
    """A plugin file imported again (a notebook reloading it) defines the same module and qualified name."""
    monkeypatch.setattr(TASK_KINDS, "_items", dict(TASK_KINDS._items))  # restored after the test

    def define():
        @dataclass
        class PercentTask(RegressionTask):
            kind: ClassVar[str] = "percent"

            class Schema(RegressionTask.Schema):
                kind: Literal["percent"]

        return register_task_kind(PercentTask)

    first, second = define(), define()
    assert first is not second and TASK_KINDS.get("percent") is second
    assert type(task_from_schema(second("share").describe())) is second


@pytest.mark.parametrize(("change", "words"), [
    ({"kind": "Bad-Kind"}, "snake_case"),
    ({"Schema": TaskSchema}, "kind: Literal['ranked']"),
    ({"summary_metrics": ()}, "summary_metrics is empty"),
    ({"summary_metrics": ("kendall_tau",)}, "no direction for kendall_tau"),
    ({"figure": "heatmap"}, "unknown figure 'heatmap'"),
])
def test_registering_a_kind_checks_its_declarations(change, words):
    class Schema(TaskSchema):
        kind: Literal["ranked"]

    attrs = {"kind": "ranked", "Schema": Schema, "summary_metrics": ("mae",),
             "higher_is_better": {"mae": False}} | change
    cls = dataclass(type("RankedTask", (Task,), attrs))
    with pytest.raises(MTLError, match=re.escape(words)):
        register_task_kind(cls)
    assert "ranked" not in TASK_KINDS


def test_unknown_kind_in_a_schema_is_one_line_with_a_suggestion():
    with pytest.raises(MTLError) as info:
        task_from_schema({"name": "grade", "kind": "clasification", "weight": 1.0, "classes": ["a", "b"]})
    message = str(info.value)
    assert "\n" not in message and "unknown task kind 'clasification'" in message
    assert "Did you mean 'classification'?" in message and "Available: binary, classification" in message


@pytest.mark.parametrize(("schema", "words"), [
    ({"name": "grade", "kind": "classification", "weight": 1.0}, "classes: Field required"),
    ({"name": "grade", "kind": "classification", "weight": 1.0, "classes": ["a", "b"], "colour": 1},
     "colour: Extra inputs are not permitted"),
    ({"name": "size", "kind": "regression", "weight": 1.0, "loss": "mae", "normalize": "none", "offset": 0,
      "scale": 1, "mean": 0}, "loss: Input should be"),
    ({"name": "size"}, "needs a 'kind'"),
])
def test_a_bad_schema_entry_is_one_line_naming_the_field(schema, words):
    with pytest.raises(MTLError, match=re.escape(words)) as info:
        task_from_schema(schema)
    assert "\n" not in str(info.value)


def test_a_schema_written_before_bounds_existed_still_loads():
    old = {"name": "size", "kind": "regression", "weight": 1.0, "unit": "mm", "loss": "mse",
           "normalize": "standardize", "value_range": 30.0, "offset": 20.0, "scale": 5.0, "mean": 21.0}
    task = task_from_schema(old)
    assert task.bounds == (None, None) and task.baseline_prediction(1)[0] == 21.0


# ---- regression bounds ---------------------------------------------------------------------------------------


def test_bounds_clamp_decoded_predictions_and_survive_the_schema():
    task = RegressionTask("x", unit="px", bounds=(0, 2048))
    task.fit(np.array([100.0, 1900.0, NAN]))
    encoded, _ = task.encode(np.array([-500.0, 1000.0, 3000.0]))
    np.testing.assert_allclose(task.decode(encoded.reshape(-1, 1)), [0.0, 1000.0, 2048.0], rtol=1e-6)
    rebuilt = task_from_schema(task.describe())
    assert rebuilt.bounds == (0, 2048)
    np.testing.assert_allclose(rebuilt.decode(encoded.reshape(-1, 1)), [0.0, 1000.0, 2048.0], rtol=1e-6)
    size = RegressionTask("size", bounds=(0, None))
    size.fit(np.array([1.0, 3.0]))
    assert size.decode(torch.tensor([[-10.0], [10.0]])).tolist() == [0.0, 12.0]  # mean 2, std 1


@pytest.mark.parametrize("bounds", [(5, 1), (2, 2), (0, 1, 2)])
def test_bounds_need_low_below_high(bounds):
    with pytest.raises(MTLError, match="bounds"):
        RegressionTask("size", bounds=bounds)


# ---- targets of several columns ------------------------------------------------------------------------------


def _pairs(values, mask=None) -> Records:
    n = len(values)
    return Records(ids=[f"c{i}" for i in range(n)], paths=[Path(f"c{i}.png") for i in range(n)],
                   targets={"offset": np.array(values, dtype=np.float64)},
                   masks={} if mask is None else {"offset": np.array(mask)})


def test_records_accept_two_columns_for_a_kind_of_width_two():
    records = _pairs([[1.0, 2.0], [NAN, NAN], [-3.0, 4.0]])
    task = ShiftTask("offset")
    records.validate([task])
    assert records.targets["offset"].shape == (3, 2)
    assert task.labelled(records.targets["offset"]).tolist() == [True, False, True]
    masked = _pairs([[1.0, 2.0], [1e9, 7.0], [-3.0, 4.0]], mask=[True, False, True])
    masked.validate([task])  # one flag per case masks the whole row
    assert np.isnan(masked.targets["offset"][1]).all()


@pytest.mark.parametrize(("values", "words"), [
    ([1.0, 2.0, 3.0], "shape (3,), expected (3, 2)"),
    ([[1.0, 2.0, 3.0]] * 3, "shape (3, 3), expected (3, 2)"),
])
def test_records_reject_the_wrong_width(values, words):
    with pytest.raises(DataError, match=re.escape(words)):
        _pairs(values).validate([ShiftTask("offset")])


def test_records_reject_a_two_column_target_for_a_one_column_kind():
    records = _records(np.zeros(3), None, "size")
    records.targets["size"] = np.zeros((3, 2))
    with pytest.raises(DataError, match=re.escape("shape (3, 2), expected (3,)")):
        records.validate([RegressionTask("size")])


def test_an_unlabelled_row_under_a_true_mask_is_a_data_error():
    with pytest.raises(DataError, match="case 'c1' has a NaN target"):
        _pairs([[1.0, 2.0], [NAN, 3.0]], mask=[True, True]).validate([ShiftTask("offset")])


# ---- predictions.csv columns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [ClassificationTask("grade", classes=["low", "mid", "high"]), BinaryTask("flag"),
                                  RegressionTask("size", unit="mm"), ShiftTask("offset")])
def test_table_columns_and_from_table_are_inverse(task):
    values = {"grade": [2, NAN, 0], "flag": [1, 0, NAN], "size": [3.5, NAN, 7.0],
              "offset": [[1.0, 2.0], [NAN, NAN], [3.0, -4.0]]}[task.name]
    values = np.array(values, dtype=np.float64)
    frame = pd.DataFrame(task.table_columns(values, "true"))
    assert all(c.endswith("_true") for c in frame.columns)
    np.testing.assert_array_equal(task.from_table(frame, "true"), values)


def test_class_tables_use_class_names_and_a_probability_column():
    task = ClassificationTask("grade", classes=["low", "high"])
    assert task.table_columns(np.array([1.0, NAN]), "pred") == {"grade_pred": ["high", ""]}
    assert list(task.output_columns(torch.tensor([[0.0, 1.0]]))) == ["grade_prob"]
    assert task.describe_prediction(torch.tensor([[0.0, 1.0]]))["prediction"] == "high"
    assert RegressionTask("size", unit="mm").describe_prediction(torch.tensor([[2.0]])) == \
        {"prediction": 2.0, "unit": "mm"}


def test_a_plugin_task_of_an_unregistered_kind_is_refused_when_the_plugin_loads():
    """A run could train it, but `mtl predict` could not rebuild it: refused before anything runs."""
    from mtl_core.errors import PluginError
    from mtl_core.plugins.contract import check_tasks

    @dataclass
    class LooseTask(RegressionTask):
        kind: ClassVar[str] = "loose"

    with pytest.raises(PluginError, match="task 'size' has kind 'loose', which is not registered"):
        check_tasks([RegressionTask("age"), LooseTask("size")], "file my_plugin.py")
