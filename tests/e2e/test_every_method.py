"""Every registered loss strategy and gradient method, and every sharing architecture, trains the JSRT example on
the phantom in process (what `mtl run examples/jsrt_res_mtnet --set loss.strategy=NAME` trains), sharing one
feature extraction; and `mtl validate` names the available strategies on a typo."""

from __future__ import annotations

import dataclasses

import torch

from mtl_core.config import load_config
from mtl_core.model import ARCHITECTURES
from mtl_core.train import WEIGHTINGS
from mtl_core.workflow.run import decide_run, make_splits, prepare, train_and_predict

from .conftest import EXAMPLE, FAST, mtl

TWO_EPOCHS = [item.replace("train.epochs=20", "train.epochs=2") for item in FAST[1::2]]


def test_every_method_and_architecture_trains_the_jsrt_example(phantom, cache_env, monkeypatch):
    for key, value in cache_env.items():
        monkeypatch.setenv(key, value)
    config = load_config(EXAMPLE, TWO_EPOCHS + ["train.batch_size=64", "model.trunk.hidden=32"])
    prep = prepare(config, phantom, say=lambda _: None)
    ctx = decide_run(config, prep, say=lambda _: None)  # the one extraction
    split = make_splits(ctx.records, prep.plugin, config)[0]
    runs = [(name, ctx) for name in WEIGHTINGS.names()]
    for shape, name in zip(ARCHITECTURES.names(), ("pcgrad", "mgda_ub", "nash_mtl_rep"), strict=True):
        # adapters, mmoe, residual: each also with a gradient method (parameter- or representation-level)
        trunk = ctx.model_cfg.trunk.model_copy(update={"architecture": shape, "experts": 2, "adapter_width": 8})
        runs.append((name, dataclasses.replace(ctx, model_cfg=ctx.model_cfg.model_copy(update={"trunk": trunk}))))
    for name, context in runs:
        fitted = train_and_predict(context, prep.tasks, split, strategy=name)
        assert len(fitted.history.train) == 2, name
        assert all(bool(torch.isfinite(v).all()) for v in fitted.outputs.values()), name
        weights = fitted.history.weights[-1]
        assert all(w == w for w in weights.values()) and any(w > 0 for w in weights.values()), (name, weights)


def test_validate_names_the_available_strategies_and_architectures_on_a_typo(cache_env):
    done = mtl("validate", str(EXAMPLE), "--set", "loss.strategy=nash_mlt", *FAST, env=cache_env)
    assert done.returncode == 2
    assert "Did you mean 'nash_mtl'" in done.stderr and "pcgrad" in done.stderr and "Traceback" not in done.stderr
    done = mtl("validate", str(EXAMPLE), "--set", "model.trunk.architecture=mmeo", *FAST, env=cache_env)
    assert done.returncode == 2 and "Did you mean 'mmoe'? Available: adapters, mmoe, residual" in done.stderr
