"""The point task: heatmap targets and losses, soft-argmax decoding, masks, negatives, and a tiny problem it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.data import TensorData
from mtl_core.errors import DataError, MTLError
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.tasks import PointTask
from mtl_core.tasks import heatmap as H
from mtl_core.train import LossComposer, Trainer, TrainSettings


def _peaked(points_uv: list[tuple[float, float]], size: int = 8, height: float = 30.0) -> torch.Tensor:
    """Logit maps (B, 1, S, S) with one very high cell at each point."""
    out = torch.full((len(points_uv), 1, size, size), -height)
    for b, (u, v) in enumerate(points_uv):
        out[b, 0, int(v * size), int(u * size)] = height
    return out


def test_local_soft_argmax_ignores_responses_far_from_the_peak():
    logits = torch.full((1, 8, 8), -10.0)
    logits[0, 1, 1], logits[0, 1, 2] = 5.0, 5.0  # the target, between two cells
    logits[0, 7, 7] = 4.9  # a near-equal response far away
    local, _ = H.local_soft_argmax(logits, radius=1)
    assert torch.allclose(local, torch.tensor([[2.0 / 8, 1.5 / 8]]), atol=1e-4)
    far, _ = H.soft_argmax(logits)
    assert far[0, 0] > 0.4  # the global one is pulled across the map


def test_soft_argmax_of_a_single_peak_is_its_cell_centre():
    found, p = H.soft_argmax(_peaked([(0.3, 0.8)])[:, 0])
    assert torch.allclose(found, torch.tensor([[2.5 / 8, 6.5 / 8]]), atol=1e-5)
    assert torch.allclose(p.sum(), torch.tensor(1.0))


def test_decoded_points_lie_inside_the_frame_whatever_the_logits():
    task = PointTask("spot", frame=(640, 480))
    logits = torch.randn(64, 2, 16, 16) * 50  # wild outputs, as on an image unlike the training data
    points = task.decode(logits)
    assert (points >= 0).all() and (points[:, 0] <= 640).all() and (points[:, 1] <= 480).all()
    task.decode_radius = None  # the global soft-argmax too
    points = task.decode(logits)
    assert (points >= 0).all() and (points[:, 0] <= 640).all() and (points[:, 1] <= 480).all()


def test_gaussian_targets_peak_on_the_point_cell_and_are_zero_without_a_point():
    heat = H.gaussian_targets(torch.tensor([[0.51, 0.26], [0.5, 0.5]]), torch.tensor([True, False]), 8, 1.0)
    assert heat[0, 2, 4] == 1.0 and heat[0].max() == 1.0 and int((heat[0] == 1.0).sum()) == 1
    assert heat[1].abs().max() == 0.0


def test_loss_is_lower_for_the_right_map_and_zero_weight_for_masked_cases():
    task = PointTask("spot", frame=(100, 100), extent="size")
    values = np.array([[31.0, 72.0, 4.0], [np.nan, np.nan, np.nan]])
    task.fit(values)
    target, mask = task.encode(values)
    assert mask.tolist() == [True, True]  # the second case is a negative: it teaches "nothing here"
    right = torch.cat([_peaked([(0.31, 0.72), (0.5, 0.5)])] * 2 + [torch.zeros(2, 1, 8, 8)], dim=1)
    right[1, :2] = -30.0  # nothing on the negative image
    heat = H.gaussian_targets(torch.tensor([[0.31, 0.72]]), torch.tensor([True]), 8, task.sigma)
    right[0, 1] = torch.log(heat[0] + 1e-6)  # the location distribution the target asks for
    wrong = torch.cat([_peaked([(0.8, 0.1), (0.5, 0.5)])] * 2 + [torch.zeros(2, 1, 8, 8)], dim=1)
    assert 10 * task.loss(right, target, mask) < task.loss(wrong, target, mask)  # right: sub-cell error only
    # a masked case contributes nothing, whatever its output
    only_first = torch.tensor([True, False])
    assert torch.allclose(task.loss(right, target, only_first), task.loss(wrong[[0, 0]] * 0 + right, target,
                                                                           only_first))
    garbage = right.clone()
    garbage[1] = torch.randn(3, 8, 8) * 100
    assert torch.allclose(task.loss(garbage, target, only_first), task.loss(right, target, only_first))


def test_without_negatives_a_case_without_a_point_is_only_missing():
    task = PointTask("spot", negatives=False)
    _, mask = task.encode(np.array([[0.2, 0.3], [np.nan, np.nan]]))
    assert mask.tolist() == [True, False]


def test_targets_are_checked():
    task = PointTask("spot", frame=(10, 10), extent="size")
    with pytest.raises(DataError, match=r"shape \(N, 3\)"):
        task.validate(np.zeros((4, 2)))
    with pytest.raises(DataError, match="outside"):
        task.validate(np.array([[11.0, 2.0, 1.0]]))
    with pytest.raises(MTLError, match="distinct"):
        PointTask("spot", axes=("x", "x"))


def test_metrics_components_and_schema_round_trip():
    task = PointTask("spot", frame=(100, 100), extent="size", extent_unit="mm", extent_scale=2.0)
    values = np.array([[10.0, 10.0, 5.0], [90.0, 50.0, 1.0], [np.nan, np.nan, np.nan]])
    task.fit(values)
    prediction = np.array([[13.0, 14.0, 4.0], [50.0, 50.0, 3.0], [20.0, 20.0, 1.0]])
    entry = task.evaluate(values, prediction)
    assert entry["n"] == 2
    assert entry["metrics"]["distance"] == pytest.approx((5.0 + 40.0) / 2)
    assert entry["metrics"]["hit_rate"] == pytest.approx(0.5)  # 5 <= 2 * 5 mm; 40 > 2 * 1 mm
    parts = task.components(values, prediction)
    assert sorted(parts) == ["size", "x", "y"] and parts["x"]["part_of"] == "spot"
    assert parts["x"]["metrics"]["mae"] == pytest.approx((3 + 40) / 2)
    assert parts["x"]["baseline"]["mae"] == pytest.approx(40.0)  # the mean point is at x = 50
    again = PointTask.from_schema(task.describe())
    assert again.describe() == task.describe()
    out = torch.randn(3, 3, 8, 8)
    assert np.allclose(again.decode(out), task.decode(out))


def _dots(n: int, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Noise images (n, size * size) with a faint bright dot in four of five, and the dots' (x, y) (NaN: none)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.3, (n, size, size))
    points = rng.uniform(2.0, size - 2.0, (n, 2))
    has = rng.random(n) > 0.2
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for i in np.flatnonzero(has):
        images[i] += np.exp(-((xx - points[i, 0]) ** 2 + (yy - points[i, 1]) ** 2) / 2.0)
    points[~has] = np.nan
    return torch.from_numpy(images.reshape(n, -1).astype(np.float32)), points


def test_a_bright_dot_on_noise_is_found_within_two_pixels():
    torch.manual_seed(0)
    size = 24
    images, points = _dots(320, size, seed=1)
    task = PointTask("dot", frame=(size, size), head_width=16)
    train, test = slice(0, 224), slice(224, 320)
    task.fit(points[train])
    model = MultiTaskModel(None, ResidualSharedTrunk(2, hidden=4, depth=0), [task], map_shape=(1, size, size))
    model.fit_feature_norm(images[train])

    def part(rows: slice) -> TensorData:
        target, mask = task.encode(points[rows])
        return TensorData(images[rows], {"dot": target}, {"dot": mask}, [str(i) for i in range(len(mask))])

    settings = TrainSettings(epochs=25, batch_size=32, lr=3e-3, patience=25, device="cpu")
    Trainer(model, LossComposer([task]), settings).fit(part(train))
    output = Trainer(model, LossComposer([task]), settings).predict(part(test))["dot"]
    entry = task.evaluate(points[test], task.decode(output))
    assert entry["metrics"]["distance"] < 2.0  # pixels
    assert entry["metrics"]["distance"] < 0.25 * entry["baseline"]["distance"]
    presence = task.presence(output)
    found = task.labelled(points[test])
    assert presence[found].mean() > 2 * presence[~found].mean()  # the heatmap also says whether a dot is there


def test_an_empty_part_has_no_labels_and_no_columns():
    task = PointTask("spot", extent="size")
    assert task.labelled(np.zeros((0, 3))).shape == (0,)
    assert task.table_columns(np.zeros((0, 3)), "pred") == {"x_pred": [], "y_pred": [], "size_pred": []}
