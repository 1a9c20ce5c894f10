"""Tests for mtl_core.evaluate.scores.evaluate_outputs: metrics and baselines by hand, masked labels never
counted, a point task's components after it, and name clashes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.errors import MTLError
from mtl_core.evaluate import evaluate_outputs
from mtl_core.tasks import BinaryTask, ClassificationTask, PointTask, RegressionTask

NAN = float("nan")


def _logits(classes: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), k).float() * 3  # (N, k)


def _old(metrics: dict, *keys: str) -> dict:
    """The metrics a class task reported before the published ones (ROC AUC, ...) were added beside them."""
    return {k: metrics[k] for k in keys}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (an undefined metric stays undefined)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))


def _fitted_tasks():
    grade = ClassificationTask("grade", classes=["a", "b", "c"])
    grade.fit(np.array([0, 0, 0, 1, 2.0]))  # majority class: a
    size = RegressionTask("size", unit="mm", normalize="none")
    size.fit(np.array([10.0, 20.0, 30.0]))  # mean 20, range 20
    flag = BinaryTask("flag")
    flag.fit(np.array([1.0, 1.0, 0.0]))  # majority: positive
    return [grade, size, flag]


def test_metrics_and_baselines_by_hand_with_missing_labels():
    tasks = _fitted_tasks()
    targets = {"grade": np.array([0, 1, 2, NAN, 1, 0]),
               "size": np.array([12.0, NAN, 25.0, 20.0, NAN, 30.0]),
               "flag": np.array([1, 0, NAN, 1, 1, 0.0])}
    outputs = {"grade": _logits([0, 1, 1, 2, 1, 2], 3),  # right, right, wrong, (missing), right, wrong
               "size": torch.tensor([[14.0], [99.0], [25.0], [17.0], [-5.0], [26.0]]),  # errors 2, -, 0, -3, -, -4
               "flag": torch.tensor([[2.0], [-1.0], [5.0], [-3.0], [0.5], [1.0]])}  # 1, 0, (missing), 0, 1, 1
    out = evaluate_outputs(tasks, outputs, targets)
    assert list(out) == ["grade", "size", "flag"]
    grade, size, flag = out["grade"], out["size"], out["flag"]
    assert (grade["kind"], grade["n"], size["n"], flag["n"]) == ("classification", 5, 4, 5)
    # grade, truth [a, b, c, b, a], predicted [a, b, b, b, c]: F1 a 2/3, b 4/5, c 0
    old = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted")
    assert _old(grade["metrics"], *old) == pytest.approx({"accuracy": 0.6, "balanced_accuracy": (0.5 + 1 + 0) / 3,
                                              "f1_macro": (2 / 3 + 0.8 + 0) / 3,
                                              "f1_weighted": (2 * 2 / 3 + 2 * 0.8 + 0) / 5})
    # the baseline predicts the training majority (a) for every case: F1 a = 2 * 2 / (2 * 2 + 3) = 4/7
    assert _old(grade["baseline"], *old) == pytest.approx({"accuracy": 0.4, "balanced_accuracy": 1 / 3,
                                                          "f1_macro": 4 / 7 / 3, "f1_weighted": 2 * 4 / 7 / 5})
    # size: errors 2, 0, -3, -4 mm; the value range is the training range, 20 mm
    assert size["unit"] == "mm"
    assert size["metrics"] == pytest.approx({"mse": 29 / 4, "mae": 9 / 4, "rmse": np.sqrt(29 / 4),
                                             "mse_scaled": 29 / 4 / 400, "mae_scaled": 9 / 4 / 20})
    assert size["baseline"]["mae"] == pytest.approx((8 + 5 + 0 + 10) / 4)  # the training mean, 20 mm
    # flag: truth [1, 0, 1, 1, 0], predicted [1, 0, 0, 1, 1]: one true positive missed, one false alarm
    assert flag["metrics"]["accuracy"] == pytest.approx(0.6) and flag["metrics"]["f1"] == pytest.approx(2 / 3)
    assert flag["baseline"]["accuracy"] == pytest.approx(0.6) and flag["baseline"]["f1"] == pytest.approx(0.75)


def test_outputs_for_unlabelled_cases_never_change_a_score():
    tasks = _fitted_tasks()
    targets = {"grade": np.array([0, NAN, 2.0]), "size": np.array([NAN, 15.0, 25.0]), "flag": np.array([NAN, 1, 0.0])}
    outputs = {"grade": _logits([0, 1, 2], 3), "size": torch.tensor([[1.0], [16.0], [24.0]]),
               "flag": torch.tensor([[1.0], [1.0], [-1.0]])}
    first = evaluate_outputs(tasks, outputs, targets)
    changed = {"grade": _logits([0, 0, 2], 3), "size": torch.tensor([[1e6], [16.0], [24.0]]),
               "flag": torch.tensor([[-9.0], [1.0], [-1.0]])}
    assert _same(evaluate_outputs(tasks, changed, targets), first)
    assert first["grade"]["metrics"]["accuracy"] == 1.0 and first["size"]["metrics"]["mae"] == 1.0


def test_a_task_without_any_label_reports_zero_cases_and_no_number():
    tasks = _fitted_tasks()[1:2]
    out = evaluate_outputs(tasks, {"size": torch.tensor([[3.0], [4.0]])}, {"size": np.array([NAN, NAN])})
    assert out["size"]["n"] == 0 and all(np.isnan(v) for v in out["size"]["metrics"].values())


def _point() -> PointTask:
    task = PointTask("nodule", frame=(64.0, 64.0), extent="size", extent_unit="mm", unit="px")
    task.fit(np.array([[16.0, 16.0, 4.0], [48.0, 48.0, 8.0]]))
    return task


def _peak_maps(cells: list[tuple[int, int]], size: int = 8) -> torch.Tensor:
    """Head maps (N, 3, size, size) with one strong peak per case (presence and location) and extent 0."""
    maps = torch.full((len(cells), 3, size, size), -20.0)
    maps[:, 2] = 0.0
    for i, (row, col) in enumerate(cells):
        maps[i, 0, row, col] = maps[i, 1, row, col] = 20.0
    return maps


def test_a_point_task_is_followed_by_its_components_with_their_own_counts():
    task = _point()
    targets = np.array([[12.0, 20.0, 5.0], [40.0, 40.0, NAN], [NAN, NAN, NAN]])
    out = evaluate_outputs([task], {"nodule": _peak_maps([(2, 1), (5, 5), (0, 0)])}, {"nodule": targets})
    assert list(out) == ["nodule", "x", "y", "size"]
    assert out["nodule"]["n"] == 2 and out["size"]["n"] == 1  # the third case has no point, the second no size
    assert all(out[name]["part_of"] == "nodule" for name in ("x", "y", "size"))
    assert (out["x"]["unit"], out["size"]["unit"]) == ("px", "mm")
    decoded = task.decode(_peak_maps([(2, 1), (5, 5), (0, 0)]))
    assert out["x"]["metrics"]["mae"] == pytest.approx(np.mean(np.abs(decoded[:2, 0] - [12.0, 40.0])))
    assert out["y"]["metrics"]["mae"] == pytest.approx(np.mean(np.abs(decoded[:2, 1] - [20.0, 40.0])))
    assert out["size"]["metrics"]["mae"] == pytest.approx(abs(decoded[0, 2] - 5.0))
    # a peak at cell (row 2, col 1) of 8 decodes near the cell's centre, (1.5, 2.5) / 8 of the frame
    assert decoded[0, :2] == pytest.approx([1.5 / 8 * 64, 2.5 / 8 * 64], abs=0.5)
    assert out["x"]["baseline"]["mae"] == pytest.approx((abs(32 - 12) + abs(32 - 40)) / 2)  # the training mean x


def test_an_entry_name_taken_twice_is_an_error_naming_both():
    task, clash = _point(), RegressionTask("x", unit="px")
    clash.fit(np.array([1.0, 2.0]))
    targets = {"nodule": np.array([[12.0, 20.0, 5.0]]), "x": np.array([3.0])}
    outputs = {"nodule": _peak_maps([(2, 1)]), "x": torch.tensor([[3.0]])}
    with pytest.raises(MTLError, match="task 'nodule' reports an entry 'x', which another task"):
        evaluate_outputs([task, clash], outputs, targets)
