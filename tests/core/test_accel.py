"""Tests for mtl_core.accel and the hardware settings of extraction and training. No GPU here: the CUDA defaults
are checked as decisions, and every setting must degrade cleanly on the CPU."""

from __future__ import annotations

import logging

import pytest
import torch

from mtl_core import accel
from mtl_core.config import RunConfig, validate_model
from mtl_core.errors import ConfigError, RunError
from mtl_core.features import FeatureCache, extract_features
from mtl_core.io import read_image
from tests.core.train.test_model_trainer import _data, _fit_tasks, _problem, _tasks, _trainer

SIZE = 32


def test_auto_settings_pick_the_fast_path_on_cuda_and_plain_fp32_on_the_cpu(monkeypatch):
    assert accel.resolve_precision("auto", "cpu") == "fp32"
    assert not accel.use_channels_last("auto", "cpu") and accel.use_channels_last("auto", "cuda")
    assert (accel.extraction_batch("auto", "cpu"), accel.extraction_batch("auto", "cuda")) == (16, 256)
    assert accel.extraction_batch(3, "cuda") == 3 and accel.loader_workers(2, "cpu") == 2
    assert accel.loader_workers("auto", "cpu") == 0
    monkeypatch.setattr(accel.os, "cpu_count", lambda: 16)
    assert accel.loader_workers("auto", "cuda") == 8
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert accel.resolve_precision("auto", "cuda") == "fp16"  # cards without bf16
    with pytest.raises(RunError, match="unknown precision 'fp8'"):
        accel.resolve_precision("fp8", "cpu")


def test_bf16_autocast_runs_on_the_cpu_and_tf32_is_plain_fp32_there():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with accel.precision_context("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with accel.precision_context("tf32", "cpu"):
        assert torch.equal(layer(x), layer(x)) and layer(x).dtype == torch.float32


def test_extraction_in_bf16_and_channels_last_is_close_to_fp32_and_cached_apart(tmp_cache, make_pngs, make_fusion):
    paths, fusion = make_pngs(4), make_fusion()
    fp32 = extract_features(fusion, paths, read_image, SIZE, precision="fp32")
    laid_out = extract_features(make_fusion(), paths, read_image, SIZE, precision="fp32", channels_last=True)
    torch.testing.assert_close(laid_out, fp32, rtol=1e-4, atol=1e-5)
    cache = FeatureCache(tmp_cache / "features")
    bf16 = cache.features(make_fusion(), paths, read_image, SIZE, precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, rtol=0.1, atol=0.05)
    again = FeatureCache(tmp_cache / "features")
    again.features(make_fusion(), paths, read_image, SIZE, precision="fp32")
    assert again.misses == 4  # another precision is another cache entry, never the bf16 one


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(monkeypatch, caplog, make_pngs, make_fusion,
                                                                  tmp_cache):
    def broken_compile(module):
        def compiled(*args):
            raise RuntimeError("no C++ compiler found\nlong compiler log")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    paths = make_pngs(3)
    with caplog.at_level(logging.WARNING, logger="mtl_core.accel"):
        got = extract_features(make_fusion(), paths, read_image, SIZE, batch_size=2, compile=True)
    torch.testing.assert_close(got, extract_features(make_fusion(), paths, read_image, SIZE, batch_size=2))
    monkeypatch.setattr(FeatureCache, "first_chunk", 1)  # three extraction passes of one fusion: one attempt
    with caplog.at_level(logging.WARNING, logger="mtl_core.accel"):
        FeatureCache(tmp_cache / "features").features(make_fusion(), paths, read_image, SIZE, compile=True)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert warnings == ["torch.compile failed (RuntimeError: no C++ compiler found); running eagerly"] * 2


def test_out_of_memory_in_extraction_says_which_batch_size_to_try(monkeypatch, make_pngs, make_fusion):
    fusion = make_fusion()

    def out_of_memory(images):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(fusion, "forward", out_of_memory)
    with pytest.raises(RunError) as caught:
        extract_features(fusion, make_pngs(2), read_image, SIZE, batch_size=64)
    assert str(caught.value) == "out of cpu memory extracting features with batch size 64: set data.batch_size=32 " \
                                "(or smaller)"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_runs_on_the_cpu_and_learns(precision):
    tasks = _tasks()
    features, records = _problem(40, seed=3)
    _fit_tasks(tasks, records)
    data = _data(tasks, features, records)
    trainer = _trainer(tasks, epochs=8, patience=100, lr=1e-2, precision=precision)
    assert trainer.scaler.is_enabled() == (precision == "fp16")  # fp16 needs a gradient scaler, bf16 does not
    history = trainer.fit(data)
    assert history.train[-1]["total"] < history.train[0]["total"]
    assert all(out.dtype == torch.float32 for out in trainer.predict(data).values())


def test_keep_on_device_leaves_cpu_tensors_alone():
    matrix = torch.zeros(3, 2)
    assert accel.keep_on_device(matrix, "cpu") is matrix


def test_hardware_settings_are_validated_with_the_config():
    config = validate_model(RunConfig, {"plugin": "x", "data": {"batch_size": "auto", "workers": 3},
                                        "compute": {"precision": "bf16", "channels_last": True, "compile": True}}, "c")
    assert config.compute.precision == "bf16" and config.data.workers == 3
    for key, bad in (("compute.precision", {"compute": {"precision": "fp8"}}),
                     ("data.batch_size", {"data": {"batch_size": 0}}), ("data.workers", {"data": {"workers": "x"}})):
        with pytest.raises(ConfigError, match=rf"^c: {key}"):
            validate_model(RunConfig, {"plugin": "x", **bad}, "c")
