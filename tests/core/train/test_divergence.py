"""A diverged training stops with one line (``loss is not finite at epoch N (task T ...)``) instead of training on
NaN and reporting that NaN beats the baseline; non-finite outputs are refused at evaluation too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.errors import RunError
from mtl_core.train import Trainer

from .test_model_trainer import _data, _fit_tasks, _problem, _tasks, _trainer


def _fitted(**settings) -> tuple[Trainer, object]:
    tasks = _tasks()
    features, records = _problem(64, seed=0)
    _fit_tasks(tasks, records)
    return _trainer(tasks, **settings), _data(tasks, features, records)


def test_a_huge_learning_rate_stops_at_the_first_non_finite_loss():
    trainer, data = _fitted(lr=1e30, epochs=4)
    with pytest.raises(RunError, match=r"loss is not finite at epoch \d \(task \w+, (training|validation) data\): "
                                       r".*lower train.lr \(now 1e\+30\)") as err:
        trainer.fit(data, data)
    assert "\n" not in str(err.value)


def test_a_non_finite_target_scale_is_caught_in_training():
    trainer, data = _fitted(epochs=2)
    data.targets["size"] = torch.where(torch.isnan(data.targets["size"]), data.targets["size"],
                                       torch.full_like(data.targets["size"], 1e38))
    with pytest.raises(RunError, match=r"loss is not finite at epoch 1 \(task (size|total), training data\)"):
        trainer.fit(data)


def test_non_finite_outputs_are_refused_at_evaluation():
    trainer, data = _fitted(epochs=1)
    trainer.fit(data)
    with torch.no_grad():
        next(trainer.model.heads["nodule"].parameters()).fill_(float("nan"))
    with pytest.raises(RunError, match="outputs for task nodule are not finite"):
        trainer.predict(data)


def test_a_sound_training_is_unchanged():
    trainer, data = _fitted(epochs=3)
    history = trainer.fit(data, data)
    assert all(np.isfinite(list(epoch.values())).all() for epoch in history.train + history.val)
    assert all(torch.isfinite(v).all() for v in trainer.predict(data).values())
