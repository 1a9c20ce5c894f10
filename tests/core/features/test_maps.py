"""Tests for pooling ``map``: feature maps kept as the cached representation (shapes, layout, float16 cache, keys,
the memory check before extracting, and the warm-run description)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mtl_core.config import ModelConfig, RunConfig
from mtl_core.errors import ConfigError
from mtl_core.features import BackboneFusion, memory
from mtl_core.features.cache import FeatureCache, extract_features, extractor_key, library_versions, to_storage
from mtl_core.features.fusion import LazyFusion, create_fusion, fusion_key
from mtl_core.io import read_image
from mtl_core.workflow.run import compute_inputs

SIZE = 32

# (backbones, map_levels, channels of each kept level, shallowest first) -- a shape table. The timm widths are
# their feature_info stages: test_efficientnet 32/48/64 at strides 8/16/32, test_resnet 48/192/96.
MAP_CASES = [
    pytest.param(["test_efficientnet"], 3, [(32, 48, 64)], id="timm-efficientnet-3"),
    pytest.param(["test_resnet"], 2, [(192, 96)], id="timm-resnet-2"),
    pytest.param(["test_efficientnet"], 1, [(64,)], id="timm-efficientnet-1"),
    pytest.param(["mtl_small_cnn"], 1, [(96,)], id="small-cnn-1"),
    pytest.param(["test_efficientnet", "mtl_small_cnn"], 1, [(64,), (96,)], id="fused"),
]


def _map_fusion(names=("test_efficientnet",), levels: int = 3, size: int = 4, **kwargs) -> BackboneFusion:
    return BackboneFusion(list(names), weights="random", image_size=SIZE, pooling="map", map_size=size,
                          map_levels=levels, **kwargs)


@pytest.mark.parametrize(("names", "levels", "channels"), MAP_CASES)
@pytest.mark.parametrize("map_size", [2, 8])
def test_map_shapes_follow_the_kept_levels(names, levels, channels, map_size):
    fusion = _map_fusion(names, levels, map_size)
    total = sum(sum(c) for c in channels)
    assert [i.map_channels for i in fusion.infos] == channels
    assert fusion.map_shape == (total, map_size, map_size)
    assert fusion.num_features == total * map_size**2
    assert fusion.feature_dtype == torch.float16
    out = fusion(torch.rand(3, 1, SIZE, SIZE))
    assert out.shape == (3, fusion.num_features) and torch.isfinite(out).all()


def test_avg_and_grid_fusions_have_no_map_shape_and_stay_float32(make_fusion):
    for pooling in ("avg", "grid"):
        fusion = make_fusion(pooling=pooling)
        assert fusion.map_shape is None and fusion.feature_dtype == torch.float32
        assert all("map_channels" not in d for d in fusion.describe())


def test_flat_features_view_back_to_the_maps_computed_by_hand():
    """At 32 px the three EfficientNet levels are 4x4, 2x2 and 1x1: at map_size 2 the first is averaged over 2x2
    cells, the second kept, the third (bilinear from one pixel) repeated; two backbones follow each other."""
    fusion = _map_fusion(["test_efficientnet", "test_resnet"], levels=3, size=2)
    images = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    maps = fusion(images).view(2, *fusion.map_shape)  # (B, C, S, S)
    expected = []
    for backbone in fusion.backbones:
        levels = backbone.model.forward_intermediates(backbone.prepare(images), indices=3, intermediates_only=True)
        assert [tuple(m.shape[-2:]) for m in levels] == [(4, 4), (2, 2), (1, 1)]
        b, c = levels[0].shape[:2]
        expected += [levels[0].view(b, c, 2, 2, 2, 2).mean(dim=(3, 5)), levels[1], levels[2].expand(-1, -1, 2, 2)]
    torch.testing.assert_close(maps, torch.cat(expected, dim=1))


def test_larger_maps_are_upsampled_bilinearly():
    fusion = _map_fusion(["mtl_small_cnn"], levels=1, size=8)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    backbone = fusion.backbones[0]
    last = backbone.model.forward_features(backbone.prepare(images))  # (B, 96, 2, 2)
    by_hand = F.interpolate(last, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(fusion(images).view(2, *fusion.map_shape), by_hand)


@pytest.mark.parametrize(("name", "levels", "most"), [("mtl_small_cnn", 2, 1), ("squeezenet1_1", 2, 1),
                                                      ("test_efficientnet", 6, 5)])
def test_more_levels_than_a_backbone_offers_is_refused(name, levels, most):
    with pytest.raises(ConfigError, match=f"set model.map_levels to at most {most}$"):
        _map_fusion([name], levels=levels)


def test_float16_storage_clamps_what_it_cannot_hold(caplog):
    big = torch.tensor([[1.0, -1e6, 7e4, 0.5]])
    with caplog.at_level(logging.WARNING, logger="mtl_core.features.cache"):
        stored = to_storage(big, torch.float16)
    assert stored.dtype == torch.float16 and torch.isfinite(stored).all()
    assert stored.tolist() == [[1.0, -65504.0, 65504.0, 0.5]]
    assert "clamped" in caplog.text
    assert to_storage(big, torch.float32).dtype == torch.float32


def test_map_features_round_trip_through_the_cache_in_float16(tmp_cache, make_pngs):
    fusion = _map_fusion(["test_efficientnet", "mtl_small_cnn"], levels=1, size=4)
    paths = make_pngs(5)
    cache = FeatureCache(tmp_cache / "features")
    first = cache.features(fusion, paths, read_image, SIZE, batch_size=2)
    assert first.dtype == torch.float16 and first.shape == (5, fusion.num_features)
    assert cache.misses == 5 and cache.hits == 0
    stored = sorted((tmp_cache / "features").rglob("*.safetensors"))
    assert sum(p.stat().st_size for p in stored) < 5 * fusion.num_features * 4  # float16 on disk, not float32
    second = FeatureCache(tmp_cache / "features")
    again = second.features(fusion, paths, read_image, SIZE)
    assert second.hits == 5 and second.misses == 0 and torch.equal(again, first)
    fresh = extract_features(fusion, paths, read_image, SIZE, batch_size=2)
    assert fresh.dtype == torch.float16 and torch.equal(fresh, first)


def test_float16_maps_are_the_float32_maps_rounded(make_pngs):
    fusion = _map_fusion(["test_efficientnet"], levels=2, size=4)
    paths = make_pngs(3)
    half = extract_features(fusion, paths, read_image, SIZE)
    full = extract_features(fusion, paths, read_image, SIZE, out=torch.empty(3, fusion.num_features))  # float32
    torch.testing.assert_close(half.float(), full, rtol=1e-3, atol=1e-4)


def test_cache_keys_follow_pooling_map_size_and_levels():
    keys = {extractor_key(f, SIZE, "reader") for f in (
        _map_fusion(["test_efficientnet"], 1, 4), _map_fusion(["test_efficientnet"], 1, 8),
        _map_fusion(["test_efficientnet"], 2, 4),
        BackboneFusion(["test_efficientnet"], weights="random", image_size=SIZE))}
    assert len(keys) == 4


@pytest.mark.parametrize("pooling", ["avg", "grid"])
def test_avg_and_grid_keys_are_those_of_earlier_versions(make_fusion, pooling):
    """Caches filled before pooling 'map' existed stay valid: the key is computed as it was."""
    fusion = make_fusion(pooling=pooling)
    spec = {"backbones": fusion.describe(), "pooling": [pooling] * 2, "grid": [fusion.grid] * 2,
            "image_size": SIZE, "reader": "reader", "versions": library_versions()}
    old = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    assert extractor_key(fusion, SIZE, "reader") == old
    assert "map_size" not in fusion_key(ModelConfig(backbones=["test_resnet"], weights="random",
                                                    pooling=pooling), SIZE, 0)[0]


# ---- memory ----------------------------------------------------------------------------------------------------


def test_available_memory_reads_meminfo_and_falls_back_to_sysconf(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.available_memory() == 8_000_000 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "absent")
    monkeypatch.setattr(memory.os, "sysconf", {"SC_AVPHYS_PAGES": 10, "SC_PAGE_SIZE": 4096}.__getitem__)
    assert memory.available_memory() == 40960


def test_maps_that_would_not_fit_are_refused_with_their_size_and_settings(monkeypatch):
    fusion = _map_fusion(["test_efficientnet"], levels=3, size=32)  # 144 x 32 x 32 float16: 294,912 B per image
    monkeypatch.setattr(memory, "available_memory", lambda: 4 * 10**9)
    assert memory.check_features_fit(1000, fusion, "cpu") == 1000 * 144 * 32 * 32 * 2
    with pytest.raises(ConfigError) as err:
        memory.check_features_fit(10_000, fusion, "cpu")  # 2.95 GB > 70 % of 4 GB
    message = str(err.value)
    assert "\n" not in message and "2.95 GB" in message and "295 KB per image" in message
    assert "model.map_size" in message and "model.map_levels" in message


def test_a_run_says_its_maps_do_not_fit_before_extracting(tmp_cache, make_pngs, monkeypatch):
    fusion = _map_fusion(["test_efficientnet"], levels=3, size=32)
    paths = make_pngs(3)
    prep = SimpleNamespace(records=SimpleNamespace(paths=paths),
                           plugin=SimpleNamespace(reader_id=lambda: "reader", read_image=read_image))
    config = RunConfig(plugin="any", train={"device": "cpu"}, data={"cache_inputs": False})
    monkeypatch.setattr(memory, "available_memory", lambda: 10**6)  # 1 MB: three maps take 1.77 MB
    with pytest.raises(ConfigError, match="model.map_size"):
        compute_inputs(prep, fusion, config, SIZE, None)
    assert not (tmp_cache / "features").exists() or not any((tmp_cache / "features").rglob("*.safetensors"))
    monkeypatch.setattr(memory, "available_memory", lambda: 10**9)
    inputs = compute_inputs(prep, fusion, config, SIZE, None)
    assert inputs.is_features and inputs.tensor.dtype == torch.float16 and inputs.cache_stats["cache_misses"] == 3


# ---- warm runs -------------------------------------------------------------------------------------------------


def test_a_warm_hit_describes_the_maps_without_building(tmp_cache, make_pngs):
    model = ModelConfig(backbones=["test_efficientnet", "mtl_small_cnn"], weights="random", pooling="map",
                        map_size=4, map_levels=1)
    first = create_fusion(model, SIZE, 0)
    second = create_fusion(model, SIZE, 0)
    assert isinstance(first, BackboneFusion) and isinstance(second, LazyFusion)
    assert second.map_shape == first.map_shape == (160, 4, 4)
    assert second.feature_dtype == torch.float16 and second.describe() == first.describe()
    paths = make_pngs(2)
    expected = FeatureCache(tmp_cache / "features").features(first, paths, read_image, SIZE)
    assert torch.equal(FeatureCache(tmp_cache / "features").features(second, paths, read_image, SIZE), expected)
    assert second._fusion is None  # all hits: nothing built
    other = create_fusion(model.model_copy(update={"map_size": 8}), SIZE, 0)
    assert isinstance(other, BackboneFusion) and other.map_shape == (160, 8, 8)


def test_a_warm_map_run_imports_neither_timm_nor_torchvision(tmp_cache, make_pngs):
    paths = make_pngs(2)
    script = f"""
import sys
from pathlib import Path
from mtl_core.config import ModelConfig
from mtl_core.features import FeatureCache
from mtl_core.io import read_image
from mtl_core.features import create_fusion
model = ModelConfig(backbones=["test_efficientnet"], weights="random", pooling="map", map_size=4, map_levels=2)
fusion = create_fusion(model, {SIZE}, 0)
paths = [Path(p) for p in {[str(p) for p in paths]!r}]
feats = FeatureCache(Path({str(tmp_cache)!r}) / "features").features(fusion, paths, read_image, {SIZE})
print(type(fusion).__name__, "timm" in sys.modules, "torchvision" in sys.modules, *fusion.map_shape, feats.dtype)
"""
    env = {**os.environ, "MTL_CACHE_DIR": str(tmp_cache)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert runs[0].stdout.split() == ["BackboneFusion", "True", "True", "112", "4", "4", "torch.float16"]
    assert runs[1].stdout.split() == ["LazyFusion", "False", "False", "112", "4", "4", "torch.float16"]
