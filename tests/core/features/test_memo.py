"""Tests for mtl_core.features.memo and mtl_core.features.fusion: what a warm run remembers instead of importing timm
and
building backbones, and that a remembered fact never outlives the files it was read from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl_core.config import ModelConfig
from mtl_core.errors import RunError
from mtl_core.features import BackboneFusion, FeatureCache, LazyFusion, create_fusion, weights
from mtl_core.features.memo import recall, remember
from mtl_core.io import read_image

SIZE = 32


def _model(**options) -> ModelConfig:
    return ModelConfig(**{"backbones": ["test_resnet", "mtl_small_cnn"], "weights": "random"} | options)


def test_a_remembered_value_holds_until_a_watched_file_changes(tmp_cache, tmp_path):
    watched, absent = tmp_path / "weights.bin", tmp_path / "not-yet"
    watched.write_bytes(b"one")
    remember("demo", {"q": 1}, {"answer": 42}, [watched, absent])
    assert recall("demo", {"q": 1}) == {"answer": 42}
    assert recall("demo", {"q": 2}) is None  # another question
    absent.write_bytes(b"")  # a place that was empty now holds something
    assert recall("demo", {"q": 1}) is None
    absent.unlink()
    watched.write_bytes(b"two!")  # the file read from changed
    assert recall("demo", {"q": 1}) is None


def test_a_damaged_record_is_ignored(tmp_cache):
    remember("demo", {"q": 1}, "value", [])
    (record,) = (tmp_cache / "memo" / "demo").glob("*.json")
    record.write_text('{"key": ')
    assert recall("demo", {"q": 1}) is None


def test_records_depend_on_the_environment_that_moves_caches(tmp_cache, monkeypatch, tmp_path):
    remember("demo", {"q": 1}, "value", [])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    assert recall("demo", {"q": 1}) is None


def test_the_weights_lookup_is_remembered_and_follows_a_download(tmp_cache, tmp_path, monkeypatch):
    """alexnet comes from torchvision, whose weights would sit in $TORCH_HOME/hub/checkpoints."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    looked = []
    real = weights._look_up
    monkeypatch.setattr(weights, "_look_up", lambda name: looked.append(name) or real(name))
    assert weights.pretrained_file("alexnet") is None
    assert weights.pretrained_file("alexnet") is None
    assert looked == ["alexnet"]  # the second answer came from the memo
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.torchvision_weights("alexnet").url)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")  # what a download would leave
    assert weights.pretrained_file("alexnet") == target
    assert looked == ["alexnet", "alexnet"]
    target.unlink()
    assert weights.pretrained_file("alexnet") is None


def test_a_half_filled_hub_cache_folder_is_looked_at_every_time(tmp_cache, tmp_path, monkeypatch):
    """test_resnet's weights would sit in the Hugging Face cache; a folder without them (a download under way, or
    only its config) must not be remembered as 'no weights', and the finished download is found."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    looked = []
    real = weights._look_up
    monkeypatch.setattr(weights, "_look_up", lambda name: looked.append(name) or real(name))
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    assert weights.pretrained_file("test_resnet") is None
    assert weights.pretrained_file("test_resnet") is None
    assert looked == ["test_resnet", "test_resnet"]  # nothing remembered
    snapshot = repo / "snapshots" / "abc123" / "model.safetensors"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"weights")
    assert weights.pretrained_file("test_resnet") == snapshot
    assert weights.pretrained_file("test_resnet") == snapshot and len(looked) == 3  # remembered now
    (repo / "refs" / "main").write_text("def456")  # a new revision
    assert weights.pretrained_file("test_resnet") is None and len(looked) == 4


def test_frozen_backbones_built_once_come_back_described_without_building(tmp_cache, make_pngs):
    model = _model()
    first = create_fusion(model, SIZE, seed=0)
    second = create_fusion(model, SIZE, seed=0)
    assert isinstance(first, BackboneFusion) and isinstance(second, LazyFusion)
    assert second.describe() == first.describe() and second.checksum() == first.checksum()
    assert second.num_features == first.num_features and second.uses_random_weights
    assert (second.pooling, second.grid) == (first.pooling, first.grid)
    paths = make_pngs(3)
    cached = FeatureCache(tmp_cache / "features")
    expected = cached.features(first, paths, read_image, SIZE)
    assert torch.equal(FeatureCache(tmp_cache / "features").features(second, paths, read_image, SIZE), expected)
    assert second._fusion is None  # every image was a cache hit: nothing was built
    extra = make_pngs(1, first_seed=50, folder="more")
    fresh = FeatureCache(tmp_cache / "features").features(second, paths + extra, read_image, SIZE)
    assert torch.equal(fresh[:3], expected) and second._fusion is not None  # a miss built it
    images = torch.rand(2, 1, SIZE, SIZE)
    assert torch.equal(second(images), first(images))  # called on images, it is the very same fusion


@pytest.mark.parametrize("change", [{"seed": 1}, {"image_size": 48}, {"model": {"pooling": "grid"}},
                                    {"model": {"backbones": ["mtl_small_cnn", "test_resnet"]}}])
def test_any_other_setting_builds_afresh(tmp_cache, change):
    create_fusion(_model(), SIZE, seed=0)
    again = create_fusion(_model(**change.get("model", {})), change.get("image_size", SIZE), change.get("seed", 0))
    assert isinstance(again, BackboneFusion)


def test_a_changed_weights_file_builds_afresh_with_its_new_weights(tmp_cache, tmp_path, make_fusion):
    source = make_fusion(["mtl_small_cnn"], seed=5).backbones[0].model
    path = tmp_path / "mtl_small_cnn.pth"
    torch.save(source.state_dict(), path)
    model = ModelConfig(backbones=["mtl_small_cnn"], weights={"mtl_small_cnn": str(path)})
    first = create_fusion(model, SIZE, 0)
    assert isinstance(create_fusion(model, SIZE, 0), LazyFusion)
    torch.save(make_fusion(["mtl_small_cnn"], seed=6).backbones[0].model.state_dict(), path)
    changed = create_fusion(model, SIZE, 0)
    assert isinstance(changed, BackboneFusion) and changed.checksum() != first.checksum()


def test_unfrozen_backbones_are_always_built(tmp_cache):
    create_fusion(_model(frozen=False), SIZE, 0)
    assert isinstance(create_fusion(_model(frozen=False), SIZE, 0), BackboneFusion)


def test_backbones_that_differ_from_their_record_are_a_clear_error(tmp_cache):
    create_fusion(_model(), SIZE, 0)
    (record,) = (tmp_cache / "memo" / "fusion").glob("*.json")
    record.write_text(record.read_text().replace('"checksum": "', '"checksum": "0'))
    lazy = create_fusion(_model(), SIZE, 0)
    with pytest.raises(RunError, match="delete that folder"):
        lazy.built()


def test_a_warm_run_imports_neither_timm_nor_torchvision(tmp_cache, tmp_path):
    """The point of the memo: the second run of the same config on cached features skips ~5 s of imports and
    building on a 2-core CPU."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (40, 40), 20 * i).save(folder / f"{i}.png")
    script = f"""
import sys
from pathlib import Path
from mtl_core.config import ModelConfig
from mtl_core.features import FeatureCache
from mtl_core.io import read_image
from mtl_core.features import create_fusion
from mtl_core.features import pretrained_available
assert not pretrained_available("test_resnet")
model = ModelConfig(backbones=["test_resnet"], weights="random")
fusion = create_fusion(model, {SIZE}, 0)
paths = sorted(Path({str(folder)!r}).glob("*.png"))
FeatureCache(Path({str(tmp_cache)!r}) / "features").features(fusion, paths, read_image, {SIZE})
print(type(fusion).__name__, "timm" in sys.modules, "torchvision" in sys.modules)
"""
    env = {**os.environ, "MTL_CACHE_DIR": str(tmp_cache)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert runs[0].stdout.split() == ["BackboneFusion", "True", "True"]
    assert runs[1].stdout.split() == ["LazyFusion", "False", "False"]
