"""The metrics papers publish (mtl_core.tasks.metrics, mtl_core.tasks.published) against scikit-learn, the
reference, on seeded random inputs with ties; degenerate inputs (one class only, constant scores, missing labels)
give NaN with a reason, never a crash; the decision threshold is chosen on the validation part."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as S
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

from mtl_core.evaluate import bootstrap_ci95, evaluate_outputs
from mtl_core.tasks import BinaryTask, ClassificationTask
from mtl_core.tasks import metrics as M
from mtl_core.tasks.published import probability_metrics

NAN = float("nan")
SEEDS = range(6)


def _binary(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.4
    positive[:2] = [True, False]  # both classes
    return positive, np.round(rng.random(n) + 0.3 * positive, 1)  # one decimal: many ties


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_ranking_metrics_equal_scikit_learn(seed):
    positive, score = _binary(seed)
    assert M.roc_auc(positive, score) == pytest.approx(S.roc_auc_score(positive, score), abs=1e-12)
    assert M.average_precision(positive, score) == pytest.approx(S.average_precision_score(positive, score),
                                                                 abs=1e-12)
    fpr, tpr, thresholds = S.roc_curve(positive, score, drop_intermediate=False)
    ours = M.roc_points(positive, score)
    assert np.allclose(ours[0], fpr) and np.allclose(ours[1], tpr) and np.allclose(ours[2][1:], thresholds[1:])


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_macro_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = np.r_[0, 1, 2, 3, rng.integers(0, 4, 56)]
    probs = _softmax(rng.normal(size=(60, 4)) + np.eye(4)[truth])
    found, reasons = probability_metrics(truth, probs, [0, 1, 2, 3], None)
    assert found["roc_auc"] == pytest.approx(S.roc_auc_score(truth, probs, multi_class="ovr", average="macro"))
    onehot = label_binarize(truth, classes=[0, 1, 2, 3])
    assert found["pr_auc"] == pytest.approx(S.average_precision_score(onehot, probs, average="macro"))
    assert "sensitivity" not in found and reasons == {}


@pytest.mark.parametrize("seed", SEEDS)
def test_expected_calibration_error_equals_scikit_learn_bins(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.random(80)
    correct = rng.random(80) < confidence
    counts, mean_conf, accuracy = M.calibration_bins(correct, confidence)
    share, mean = calibration_curve(correct, confidence, n_bins=M.ECE_BINS, strategy="uniform")
    assert np.allclose(accuracy[counts > 0], share) and np.allclose(mean_conf[counts > 0], mean)
    expected = np.sum(counts[counts > 0] * np.abs(share - mean)) / len(confidence)  # from scikit-learn's bins
    assert M.expected_calibration_error(correct, confidence) == pytest.approx(expected)


def test_sensitivity_and_specificity_equal_scikit_learn_recall():
    positive, score = _binary(3)
    sensitivity, specificity = M.sensitivity_specificity(positive, score, 0.5)
    called = score >= 0.5
    assert sensitivity == pytest.approx(S.recall_score(positive, called))
    assert specificity == pytest.approx(S.recall_score(~positive, ~called))


def test_youden_and_target_sensitivity_thresholds_by_hand():
    # thresholds from the top: 0.9 (sens 1/4, 1 - spec 0), 0.8 (2/4, 0), 0.6 (3/4, 0): J 0.75, the best;
    # 0.4 (3/4, 1/3), 0.35 (4/4, 1/3): J 0.67, the highest reaching a sensitivity of 0.9
    positive = np.array([0, 0, 1, 0, 1, 1, 1], dtype=bool)
    score = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.8, 0.9])
    assert M.choose_threshold(positive, score) == 0.6
    fpr, tpr, thresholds = S.roc_curve(positive, score)
    assert thresholds[np.argmax(tpr - fpr)] == 0.6
    assert M.choose_threshold(positive, score, target_sensitivity=0.9) == 0.35
    assert M.choose_threshold(positive, score, target_sensitivity=0.5) == 0.8


def _fitted_binary() -> BinaryTask:
    task = BinaryTask("flag")
    task.fit(np.array([0, 0, 1.0]))
    return task


def _logits(p: list[float]) -> torch.Tensor:
    p = torch.tensor(p).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p)).reshape(-1, 1)  # (N, 1)


def test_the_threshold_is_chosen_on_the_validation_part_and_applied_to_the_test_part():
    task = _fitted_binary()
    val = ({"flag": _logits([0.1, 0.2, 0.35, 0.4, 0.6, 0.8, 0.9])}, {"flag": np.array([0, 0, 1, 0, 1, 1, 1.0])})
    test_truth = np.array([1, 1, 0, 0, 0, NAN])
    test = {"flag": _logits([0.7, 0.5, 0.65, 0.1, 0.2, 0.99])}
    entry = evaluate_outputs([task], test, {"flag": test_truth}, validation=val)["flag"]
    assert entry["threshold"]["rule"] == "youden" and entry["threshold"]["values"][0] == pytest.approx(0.6, abs=1e-5)
    # at 0.6: test positives 0.7 (found), 0.5 (missed); negatives 0.65 (false alarm), 0.1, 0.2: spec 2/3
    assert entry["metrics"]["sensitivity"] == pytest.approx(0.5)
    assert entry["metrics"]["specificity"] == pytest.approx(2 / 3)
    assert entry["metrics"]["accuracy"] == pytest.approx(0.6)  # the decoded prediction (p > 0.5) is unchanged
    target = evaluate_outputs([task], test, {"flag": test_truth}, validation=val, threshold="sensitivity:0.9")
    assert target["flag"]["threshold"]["values"][0] == pytest.approx(0.35, abs=1e-5)
    assert target["flag"]["metrics"]["sensitivity"] == 1.0


def test_one_class_only_in_the_held_out_labels_is_nan_with_a_reason():
    task = _fitted_binary()
    entry = evaluate_outputs([task], {"flag": _logits([0.2, 0.7, 0.4])}, {"flag": np.array([1, 1, 1.0])})["flag"]
    m, why = entry["metrics"], entry["undefined"]
    assert np.isnan(m["roc_auc"]) and np.isnan(m["pr_auc"]) and np.isfinite(m["ece"])
    assert why["roc_auc"] == "the 3 labelled held-out cases hold 1 class only"
    assert why["sensitivity"] == "no validation part to choose the decision threshold on"


def test_constant_scores_rank_at_chance_and_choose_no_threshold():
    positive = np.array([1, 0, 1, 0, 0], dtype=bool)
    score = np.full(5, 0.3)
    assert M.roc_auc(positive, score) == S.roc_auc_score(positive, score) == 0.5
    assert M.average_precision(positive, score) == pytest.approx(S.average_precision_score(positive, score))
    assert np.isnan(M.choose_threshold(positive, score))
    task = _fitted_binary()
    val = ({"flag": _logits([0.3] * 4)}, {"flag": np.array([0, 1, 0, 1.0])})
    entry = evaluate_outputs([task], {"flag": _logits([0.3] * 5)}, {"flag": positive.astype(float)},
                             validation=val)["flag"]
    assert entry["metrics"]["roc_auc"] == 0.5 and np.isnan(entry["metrics"]["sensitivity"])
    assert "constant" in entry["undefined"]["sensitivity"]


def test_missing_labels_are_masked_out_of_every_metric():
    rng = np.random.default_rng(0)
    task = ClassificationTask("grade", classes=["a", "b", "c"])
    task.fit(np.array([0, 1, 2, 0.0]))
    truth = np.r_[0, 1, 2, rng.integers(0, 3, 27)].astype(float)
    logits = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    full = evaluate_outputs([task], {"grade": logits}, {"grade": truth})["grade"]
    with_missing = evaluate_outputs([task], {"grade": torch.cat([logits, torch.randn(5, 3) * 9])},
                                    {"grade": np.r_[truth, [NAN] * 5]})["grade"]
    for key in ("roc_auc", "pr_auc", "ece"):
        assert with_missing["metrics"][key] == full["metrics"][key]
    probs = torch.softmax(logits, 1).numpy()
    assert full["metrics"]["roc_auc"] == pytest.approx(S.roc_auc_score(truth, probs, multi_class="ovr"))


def test_no_labelled_case_gives_nan_everywhere_with_reasons():
    found, reasons = probability_metrics(np.zeros(0), np.zeros((0, 2)), [1], [None])
    assert all(np.isnan(v) for v in found.values()) and set(reasons) == set(found)


def test_bootstrap_intervals_are_seeded_and_hold_the_estimate():
    positive, score = _binary(1, n=60)
    first = bootstrap_ci95(lambda rows: {"roc_auc": M.roc_auc(positive[rows], score[rows])}, 60, resamples=200)
    again = bootstrap_ci95(lambda rows: {"roc_auc": M.roc_auc(positive[rows], score[rows])}, 60, resamples=200)
    assert first == again
    low, high = first["roc_auc"]
    assert low < M.roc_auc(positive, score) < high and high - low < 0.5
