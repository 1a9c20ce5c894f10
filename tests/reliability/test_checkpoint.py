"""Checkpoints in process: a training interrupted after any epoch and resumed ends bit for bit as an uninterrupted
one, for every weighting strategy; torn, corrupt or foreign checkpoints are refused without running code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mtl_core.errors import RunError
from mtl_core.train import WEIGHTINGS
from mtl_core.train import checkpoint as ckpt
from mtl_core.train import state as state_module
from tests.core.train.test_model_trainer import _data, _fit_tasks, _problem, _tasks, _trainer

EPOCHS = 6


class Interrupted(BaseException):
    """Stands for SIGKILL or Ctrl-C: whatever was not saved is lost."""


def _parts(tasks):
    features, records = _problem(40, seed=3)
    _fit_tasks(tasks, records)
    return (_data(tasks, features[:28], records.subset(np.arange(28))),
            _data(tasks, features[28:], records.subset(np.arange(28, 40))))


def _fit(strategy, path=None, stop_after=None, monkeypatch=None, **settings):
    """A fresh model and trainer fitted for EPOCHS epochs; ``stop_after`` interrupts it after that many saves."""
    tasks = _tasks()
    train, val = _parts(tasks)
    trainer = _trainer(tasks, strategy, epochs=EPOCHS, patience=settings.pop("patience", 100), **settings)
    if stop_after is not None:
        saves = []

        def save_then_stop(where, state):
            ckpt.save_checkpoint(where, state)
            saves.append(where)
            if saves.count(path) == stop_after and where == path:  # side files of best weights do not count
                raise Interrupted

        monkeypatch.setattr(state_module, "save_checkpoint", save_then_stop)
        with pytest.raises(Interrupted):
            trainer.fit(train, val, checkpoint=path)
        monkeypatch.undo()
        return None
    history = trainer.fit(train, val, checkpoint=path)
    return trainer, history, trainer.predict(val)


def _same(a, b):
    (trainer_a, history_a, out_a), (trainer_b, history_b, out_b) = a, b
    assert history_a == history_b
    state_a, state_b = trainer_a.model.state_dict(), trainer_b.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)


@pytest.mark.parametrize("strategy", WEIGHTINGS.names())
def test_resumed_training_is_bit_identical(strategy, tmp_path, monkeypatch):
    reference = _fit(strategy)
    path = tmp_path / "main.safetensors"
    for stop_after in (1, 3):  # interrupted twice, resumed twice
        _fit(strategy, path, stop_after=stop_after, monkeypatch=monkeypatch)
        assert ckpt.load_checkpoint(path)["epoch"] == (1 if stop_after == 1 else 4)
    _same(reference, _fit(strategy, path))


def test_best_weights_kept_in_their_side_file_survive_a_resume(tmp_path, monkeypatch):
    reference = _fit("static", lr=0.3)  # a large step: the validation loss goes up after its best epoch
    path, kinds = tmp_path / "main.safetensors", set()
    while not path.exists() or ckpt.load_checkpoint(path)["epoch"] < EPOCHS - 1:  # interrupted after every save
        _fit("static", path, stop_after=1, monkeypatch=monkeypatch, lr=0.3)
        kinds.add(type(ckpt.load_checkpoint(path)["best_weights"]).__name__)
    assert kinds == {"str", "int"}  # 'model' after an improving epoch, an epoch number when the side file holds them
    _same(reference, _fit("static", path, lr=0.3))


def test_resume_after_early_stop_skips_training(tmp_path):
    path = tmp_path / "main.safetensors"
    first = _fit("static", path, patience=1, lr=0.3)
    assert ckpt.load_checkpoint(path)["stopped"] and len(first[1].train) < EPOCHS
    again = _fit("static", path, patience=1, lr=0.3)  # finished: loads the best weights, trains nothing
    _same(first, again)


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "main.safetensors"
    _fit("static", path)
    with pytest.raises(RunError, match=r"other training settings \(lr"):
        _fit("static", path, lr=0.5)
    with pytest.raises(RunError, match="does not fit this model"):
        _refit_other_width(path)


def _refit_other_width(path):
    tasks = _tasks()
    train, val = _parts(tasks)
    trainer = _trainer(tasks, epochs=EPOCHS, patience=100)
    trainer.model.heads["size"] = torch.nn.Linear(32, 2)  # another architecture, same settings
    trainer.fit(train, val, checkpoint=path)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "pickle", "empty"])
def test_damaged_checkpoint_is_refused(damage, tmp_path):
    path = tmp_path / "main.safetensors"
    ckpt.save_checkpoint(path, {"epoch": 2, "w": torch.arange(1000.0)})
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":
        path.write_bytes(data[:-8] + bytes([data[-8] ^ 1]) + data[-7:])
    elif damage == "pickle":
        path.write_bytes(pickle.dumps({"epoch": 2}))
    else:
        path.write_bytes(b"")
    with pytest.raises(RunError, match="corrupt"):
        ckpt.load_checkpoint(path)


def test_checkpoint_round_trips_every_kind_of_value(tmp_path):
    state = {"i": 3, "f": 0.1 + 0.2, "inf": float("inf"), "s": "x", "n": None, "b": True, "t": (0.9, 0.999),
             "l": [1, {"k": torch.zeros(2, dtype=torch.int64)}], 7: torch.tensor(1.5),
             "a": np.arange(3, dtype=np.uint32), "rng": ckpt.rng_state(torch.Generator().manual_seed(1))}
    path = tmp_path / "c.safetensors"
    ckpt.save_checkpoint(path, state)
    back = ckpt.load_checkpoint(path)
    assert back["f"] == 0.1 + 0.2 and back["inf"] == float("inf") and back["t"] == (0.9, 0.999)
    assert back[7].item() == 1.5 and torch.equal(back["l"][1]["k"], torch.zeros(2, dtype=torch.int64))
    assert back["a"].dtype == np.uint32 and back["a"].tolist() == [0, 1, 2]
    assert torch.equal(back["rng"]["generator"], state["rng"]["generator"])
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


# ---- the checkpoints folder of a run ---------------------------------------------------------------------------


def _folder(out, resume, config=None, notes=None):
    config = config or {"train": {"lr": 0.0001, "seed": 0}, "plugin": "p"}
    return ckpt.RunCheckpoints(out, config, {"cases": 3, "digest": "d"}, resume=resume,
                               say=(notes if notes is not None else []).append)


def test_resume_refuses_another_configuration_naming_the_key(tmp_path):
    _folder(tmp_path, resume=False)
    with pytest.raises(RunError, match=r"another configuration \(train\.lr: 0\.0001 there, 0\.5 now\)"):
        _folder(tmp_path, resume=True, config={"train": {"lr": 0.5, "seed": 0}, "plugin": "p"})


def test_resume_refuses_a_finished_run_and_starts_an_empty_folder(tmp_path):
    notes = []
    folder = _folder(tmp_path / "new", resume=True, notes=notes)  # nothing there yet: start, and say so
    assert "no checkpoint to resume" in notes[0]
    folder.path("final").write_bytes(b"x")
    assert _folder(tmp_path / "new", resume=True).trainings() == ["final"]
    folder.finish()
    (tmp_path / "new" / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="is a finished run; nothing to resume"):
        _folder(tmp_path / "new", resume=True)


def test_a_fresh_run_drops_stale_checkpoints(tmp_path):
    folder = _folder(tmp_path, resume=False)
    folder.path("repeat0-fold0").write_bytes(b"x")
    (folder.folder / ".repeat0-fold0.safetensors.x.tmp").write_bytes(b"torn")
    assert _folder(tmp_path, resume=False).trainings() == []
    assert [p.name for p in folder.folder.iterdir()] == ["run.json"]


def test_a_save_after_a_kill_between_renames_keeps_the_checkpoint_left_aside(tmp_path):
    path = tmp_path / "c.safetensors"
    ckpt.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    ckpt.save_checkpoint(path, {"epoch": 2, "w": torch.ones(3)})
    path.rename(tmp_path / ".c.safetensors.old")  # killed after moving epoch 2 aside, before the new one went in
    assert ckpt.load_checkpoint(ckpt.checkpoint_file(path))["epoch"] == 2
    ckpt.save_checkpoint(path, {"epoch": 3, "w": torch.ones(3)})  # must not overwrite the only good checkpoint first
    assert ckpt.load_checkpoint(path)["epoch"] == 3
    assert ckpt.load_checkpoint(tmp_path / ".c.safetensors.old")["epoch"] == 2
