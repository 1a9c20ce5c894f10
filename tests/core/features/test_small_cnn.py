"""Tests for mtl_core.features.small_cnn: the engine's own CNN as a backbone (shapes, width, registry, seeds)."""

from __future__ import annotations

import pytest
import torch

from mtl_core import BackboneFusion
from mtl_core.errors import MTLError
from mtl_core.features import backbone_source
from mtl_core.features.small_cnn import LOCAL_BACKBONES, SmallCNN, mtl_small_cnn


def _stage(size: int) -> int:
    """Side after one stride-2 3x3 convolution with padding 1."""
    return (size - 1) // 2 + 1


# (widths, in_chans, input side, expected feature map (C, H, W))
SHAPES = [
    ((16, 32, 64, 96), 3, 32, (96, 2, 2)),
    ((16, 32, 64, 96), 3, 64, (96, 4, 4)),
    ((16, 32, 64, 96), 3, 33, (96, 3, 3)),  # 33 -> 17 -> 9 -> 5 -> 3
    ((16, 32, 64, 96), 3, 160, (96, 10, 10)),  # the declared input size
    ((8, 12), 1, 32, (12, 8, 8)),
]


@pytest.mark.parametrize(("widths", "in_chans", "side", "expected"), SHAPES)
def test_feature_map_and_pooled_shapes(widths, in_chans, side, expected):
    torch.manual_seed(0)
    model = SmallCNN(widths, in_chans=in_chans).eval()
    x = torch.rand(2, in_chans, side, side)
    with torch.no_grad():
        maps, pooled = model.forward_features(x), model(x)
    assert tuple(maps.shape) == (2, *expected)
    side_out = side
    for _ in widths:
        side_out = _stage(side_out)
    assert maps.shape[-1] == side_out
    assert model.num_features == widths[-1] == pooled.shape[1]
    torch.testing.assert_close(pooled, maps.mean(dim=(2, 3)))  # forward is the global average of the last map


def test_registered_model_has_the_documented_size():
    model = mtl_small_cnn()
    assert model.num_features == 96
    # per stage: 3x3 conv cin->cout and cout->cout without bias, two batch norms of 2 * cout weights
    expected = sum(9 * cin * cout + 9 * cout * cout + 4 * cout
                   for cin, cout in [(3, 16), (16, 32), (32, 64), (64, 96)])
    assert sum(p.numel() for p in model.parameters()) == expected == 210_928  # "about 0.2 M parameters"


def test_it_is_found_by_name_before_timm_and_torchvision():
    assert "mtl_small_cnn" in LOCAL_BACKBONES.names()
    assert backbone_source("mtl_small_cnn") == "mtl"
    with pytest.raises(MTLError, match="Did you mean 'mtl_small_cnn'"):
        LOCAL_BACKBONES.get("mtl_smal_cnn")
    with pytest.raises(MTLError, match="already registered"):
        LOCAL_BACKBONES.register("mtl_small_cnn")(mtl_small_cnn)


def test_the_same_seed_builds_the_same_network_and_another_seed_another():
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return mtl_small_cnn().state_dict()

    first, again, other = build(0), build(0), build(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_as_a_fused_backbone_on_grey_32_pixel_images():
    fusion = BackboneFusion(["mtl_small_cnn"], weights="random", image_size=32, seed=3)
    again = BackboneFusion(["mtl_small_cnn"], weights="random", image_size=32, seed=3)
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = fusion(images)
        repeated = again(images)
    assert fusion.num_features == 96 and features.shape == (4, 96)
    torch.testing.assert_close(features, repeated, rtol=0, atol=0)  # the backbone seed fixes its weights
    assert features.std(dim=0).max() > 0  # different images give different features
