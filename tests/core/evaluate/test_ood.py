"""The out-of-distribution check of ``mtl predict``: calibrated on held-out cases, flags what lies far away."""

from __future__ import annotations

import pytest
import torch

from mtl_core.errors import RunError
from mtl_core.evaluate.ood import DistanceCheck, knn_distance


def _cloud(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed)) + shift


def test_knn_distance_skips_the_query_itself_when_asked():
    points = torch.tensor([[0.0], [1.0], [3.0]])
    assert torch.allclose(knn_distance(points, points, k=1), torch.zeros(3))
    assert torch.allclose(knn_distance(points, points, k=1, skip_self=True), torch.tensor([1.0, 1.0, 2.0]))


def test_new_cases_like_the_training_ones_pass_and_far_ones_are_flagged():
    check = DistanceCheck.fit(_cloud(400, 0), _cloud(200, 1), quantile=0.99)
    alike = check.scores(_cloud(500, 2))
    assert (alike > 1).mean() < 0.05  # about 1 % expected; a loose bound that a correct check always meets
    assert (check.scores(_cloud(50, 3, shift=5.0)) > 1).all()
    assert check.calibrated_on == 200


def test_without_held_out_cases_the_training_cases_calibrate(tmp_path):
    check = DistanceCheck.fit(_cloud(100, 0), torch.zeros(0, 16))
    assert check.calibrated_on == 100 and check.threshold > 0
    check.save(tmp_path / "ood.safetensors")
    again = DistanceCheck.load(tmp_path / "ood.safetensors")
    far = _cloud(5, 4, shift=10.0)
    assert again.threshold == check.threshold and (again.scores(far) == check.scores(far)).all()


def test_a_damaged_file_is_one_clear_error(tmp_path):
    (tmp_path / "ood.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RunError, match="out-of-distribution check"):
        DistanceCheck.load(tmp_path / "ood.safetensors")
