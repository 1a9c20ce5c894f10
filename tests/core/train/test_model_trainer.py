"""Tests for mtl_core.model.network and mtl_core.train.trainer: cached features vs raw images, determinism, early
stopping,
and learning something a trivial baseline cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_core.data import Records, TensorData, load_image_tensor
from mtl_core.features import FeatureCache
from mtl_core.io import read_image
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.tasks import BinaryTask, ClassificationTask, RegressionTask
from mtl_core.train import WEIGHTINGS, LossComposer, Trainer, TrainSettings

NAN = float("nan")
WIDTH = 16


def _tasks():
    return [ClassificationTask("lesion", classes=["a", "b", "c"], label_smoothing=0.1),
            BinaryTask("nodule"), RegressionTask("size", unit="mm")]


def _records(targets: dict[str, np.ndarray]) -> Records:
    n = len(next(iter(targets.values())))
    return Records(ids=[f"c{i}" for i in range(n)], paths=[Path(f"c{i}.png") for i in range(n)], targets=targets)


def _problem(n: int, seed: int, noise: float = 0.0, missing: bool = True) -> tuple[torch.Tensor, Records]:
    """Features (n, WIDTH) and labels that are simple functions of them; some labels missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, WIDTH))
    flip = rng.random(n) < noise
    lesion = np.argmax(x[:, :3], axis=1).astype(float)
    lesion[flip] = rng.integers(0, 3, flip.sum())
    nodule = ((x[:, 3] > 0) ^ flip).astype(float)
    size = 20.0 + 6.0 * x[:, 4] + noise * 10 * rng.normal(size=n)
    if missing:
        lesion[::4], size[1::5] = NAN, NAN
    return torch.from_numpy(x.astype(np.float32)), _records({"lesion": lesion, "nodule": nodule, "size": size})


def _data(tasks, features, records) -> TensorData:
    return TensorData.build(features, records, tasks)


def _trainer(tasks, strategy: str = "static", fusion=None, width: int = WIDTH, **settings) -> Trainer:
    torch.manual_seed(0)
    trunk = ResidualSharedTrunk(width, hidden=32, depth=2, dropout=settings.pop("dropout", 0.2))
    model = MultiTaskModel(fusion, trunk, tasks)
    options = {"epochs": 5, "batch_size": 16, "lr": 1e-2, "patience": 100, "seed": 0, "device": "cpu"} | settings
    return Trainer(model, LossComposer(tasks, strategy), TrainSettings(**options))


def _fit_tasks(tasks, records: Records) -> None:
    for task in tasks:
        task.fit(records.targets[task.name])


# ---- cached features vs raw images ---------------------------------------------------------------------------


def test_model_trained_on_cached_features_gives_the_same_outputs_on_raw_images(tmp_cache, make_pngs, make_fusion):
    paths, fusion, tasks = make_pngs(10), make_fusion(), _tasks()
    features = FeatureCache(tmp_cache / "features").features(fusion, paths, read_image, 32)
    _, records = _problem(10, seed=1)
    records.paths = paths
    _fit_tasks(tasks, records)
    trainer = _trainer(tasks, fusion=fusion, width=fusion.num_features, epochs=3)
    trainer.fit(_data(tasks, features, records))
    from_features = trainer.predict(_data(tasks, features, records))
    images = torch.stack([load_image_tensor(p, read_image, 32) for p in paths])  # (N, 1, 32, 32)
    trainer.model.eval()
    with torch.no_grad():
        from_images = trainer.model(images)
    assert from_images.keys() == from_features.keys() == {t.name for t in tasks}
    for task in tasks:
        torch.testing.assert_close(from_images[task.name], from_features[task.name], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(task.decode(from_images[task.name]), task.decode(from_features[task.name]))


def _squares(n: int, seed: int) -> tuple[torch.Tensor, Records]:
    """Grey 32x32 images (N, 1, 32, 32); every other one shows a bright square of side 6 to 13 px somewhere:
    whether there is one (binary) and its side (regression, missing where there is none)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.05, (n, 1, 32, 32)).clip(0, 1)
    square = (np.arange(n) % 2).astype(float)
    side = rng.integers(6, 14, n).astype(float)
    for i in np.flatnonzero(square):
        s = int(side[i])
        row, col = rng.integers(0, 32 - s, 2)
        images[i, 0, row:row + s, col:col + s] = 0.9
    side[square == 0] = NAN
    return torch.from_numpy(images.astype(np.float32)), _records({"square": square, "side": side})


def test_fine_tuning_an_unfrozen_backbone_on_images_learns(make_fusion):
    fusion = make_fusion(["mtl_small_cnn"], frozen=False)
    tasks = [BinaryTask("square"), RegressionTask("side", unit="px")]
    images, records = _squares(64, seed=0)
    test_images, test_records = _squares(32, seed=1)
    _fit_tasks(tasks, records)
    before = [p.detach().clone() for p in fusion.parameters()]
    trainer = _trainer(tasks, fusion=fusion, width=fusion.num_features, epochs=15, batch_size=16, lr=3e-3,
                       dropout=0.0)
    history = trainer.fit(TensorData.build(images, records, tasks, is_features=False))
    first, last = history.train[0]["total"], min(epoch["total"] for epoch in history.train[-3:])
    assert last < 0.25 * first, [round(epoch["total"], 3) for epoch in history.train]
    assert any(not torch.equal(b, p) for b, p in zip(before, fusion.parameters(), strict=True))  # it was trained
    outputs = trainer.predict(TensorData.build(test_images, test_records, tasks, is_features=False))
    result = {t.name: t.evaluate(test_records.targets[t.name], t.decode(outputs[t.name])) for t in tasks}
    assert result["square"]["metrics"]["accuracy"] >= 0.9 > result["square"]["baseline"]["accuracy"] + 0.3
    assert result["side"]["metrics"]["mae"] < 0.6 * result["side"]["baseline"]["mae"]


# ---- determinism ---------------------------------------------------------------------------------------------


def _fit_weights(seed: int):
    tasks = _tasks()
    features, records = _problem(48, seed=3)
    _fit_tasks(tasks, records)
    trainer = _trainer(tasks, epochs=4, seed=seed)
    history = trainer.fit(_data(tasks, features[:32], records.subset(np.arange(32))),
                          _data(tasks, features[32:], records.subset(np.arange(32, 48))))
    return trainer.model.state_dict(), history


def test_two_fits_with_the_same_seed_give_identical_weights():
    (first, history_a), (second, history_b) = _fit_weights(seed=7), _fit_weights(seed=7)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert history_a == history_b
    other, _ = _fit_weights(seed=8)  # the seed matters (shuffling, dropout), so the check above can fail
    assert not all(torch.equal(first[k], other[k]) for k in first)


# ---- early stopping ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", WEIGHTINGS.names())
def test_early_stopping_restores_the_best_epoch(strategy):
    tasks = _tasks()
    train_x, train_rec = _problem(24, seed=0, noise=0.5)  # small and noisy: it overfits within a few epochs
    val_x, val_rec = _problem(24, seed=1, noise=0.5)
    _fit_tasks(tasks, train_rec)
    trainer = _trainer(tasks, strategy, epochs=80, lr=3e-2, patience=5, batch_size=8, dropout=0.0)
    val = _data(tasks, val_x, val_rec)
    history = trainer.fit(_data(tasks, train_x, train_rec), val)
    # The criterion is the static-weight sum of the per-task validation losses (Trainer.stopping_score): adaptive
    # weightings move their weights between epochs, so their weighted totals are not comparable across epochs.
    scores = [trainer.stopping_score(epoch) for epoch in history.val]
    assert len(scores) < 80 and history.best_epoch < len(scores) - 1  # it stopped early, after the best epoch
    assert scores[history.best_epoch] == min(scores)
    restored = trainer.evaluate_loss(val)
    assert trainer.stopping_score(restored) == pytest.approx(min(scores), rel=1e-9, abs=0)  # the model's state
    # the weighting's state (log-variances, DWA weights) is restored too: the weighted total is the best epoch's
    assert restored["total"] == pytest.approx(history.val[history.best_epoch]["total"], rel=1e-9, abs=0)


# ---- it learns -----------------------------------------------------------------------------------------------


def test_tiny_learnable_problem_beats_its_baselines():
    tasks = _tasks()
    features, records = _problem(240, seed=4)
    train, val, test = np.arange(0, 150), np.arange(150, 180), np.arange(180, 240)
    _fit_tasks(tasks, records.subset(train))
    trainer = _trainer(tasks, epochs=40, batch_size=32, patience=10)
    history = trainer.fit(_data(tasks, features[train], records.subset(train)),
                          _data(tasks, features[val], records.subset(val)))
    assert history.val[-1]["total"] < history.val[0]["total"]
    outputs = trainer.predict(_data(tasks, features[test], records.subset(test)))
    result = {t.name: t.evaluate(records.targets[t.name][test], t.decode(outputs[t.name])) for t in tasks}
    for name in ("lesion", "nodule"):
        assert result[name]["metrics"]["accuracy"] > result[name]["baseline"]["accuracy"] + 0.2
    assert result["size"]["metrics"]["mae"] < 0.5 * result["size"]["baseline"]["mae"]


def test_a_task_without_any_training_label_does_not_break_training():
    tasks = _tasks()
    features, records = _problem(32, seed=5)
    records.targets["size"][:] = NAN
    _fit_tasks(tasks, records)
    trainer = _trainer(tasks, epochs=3)
    history = trainer.fit(_data(tasks, features, records), _data(tasks, features, records))
    assert all(epoch["size"] == 0.0 and np.isfinite(epoch["total"]) for epoch in history.train + history.val)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_trunk_dropout_keeps_each_value_with_probability_1_minus_p_scaled_up(p):
    from mtl_core.model.trunk import Dropout

    drop = Dropout(p)
    x = torch.rand(400, 500).add_(0.5).requires_grad_()
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / (1 - p))  # gradients flow through the kept values only
    assert torch.equal(drop.eval()(x), x)
