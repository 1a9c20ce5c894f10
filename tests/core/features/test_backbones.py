"""Tests for mtl_core.features.backbones and mtl_core.features.weights: fused widths, inputs, freezing, names and
weight files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mtl_core.errors import MTLError, WeightsError
from mtl_core.features import Backbone, BackboneFusion, pretrained_available
from mtl_core.io import file_digest
from mtl_core.model import MultiTaskModel, ResidualSharedTrunk
from mtl_core.tasks import BinaryTask, RegressionTask

SIZE = 32

# (backbone, pooling, expected width of its pooled vector at 32x32 with grid 2) -- a shape table
WIDTH_CASES = [
    pytest.param("test_resnet", "avg", 96, id="timm-resnet-avg"),
    pytest.param("test_efficientnet", "avg", 256, id="timm-efficientnet-avg"),
    pytest.param("test_resnet", "grid", 96 * 4, id="timm-resnet-grid"),
    pytest.param("test_efficientnet", "grid", 256 * 4, id="timm-efficientnet-grid"),
    pytest.param("squeezenet1_1", "avg", 512, id="torchvision-squeezenet-avg"),
    pytest.param("squeezenet1_1", "grid", 512 * 4, id="torchvision-squeezenet-grid"),
    pytest.param("test_mambaout", "avg", 256, id="timm-mambaout-avg"),
    pytest.param("test_mambaout", "grid", 64 * 4, id="timm-mambaout-grid"),
]


def _images(channels: int, size: int = 40, n: int = 2) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(channels))


def _save_state(module: torch.nn.Module, path, wrap: bool = False):
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if wrap else state, path)
    return path


# ---- widths --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize(("name", "pooling", "width"), WIDTH_CASES)
def test_backbone_width_matches_its_output(name, pooling, width, channels):
    fusion = BackboneFusion([name], weights="random", image_size=SIZE, pooling=pooling, grid=2)
    features = fusion(_images(channels))
    assert fusion.infos[0].num_features == width
    assert features.shape == (2, fusion.num_features)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("pooling", ["avg", "grid"])
@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_fused_width_is_the_sum_of_backbone_widths(make_fusion, pooling, channels):
    fusion = make_fusion(pooling=pooling, grid=2)
    widths = [info.num_features for info in fusion.infos]
    features = fusion(_images(channels, n=3))
    assert fusion.num_features == sum(widths) == features.shape[1]
    assert features.shape[0] == 3
    # the concatenation keeps each backbone's block in order
    start = 0
    for backbone, width in zip(fusion.backbones, widths, strict=True):
        torch.testing.assert_close(features[:, start:start + width], backbone(_images(channels, n=3)))
        start += width


def test_grayscale_input_equals_the_same_image_on_three_channels(make_fusion):
    fusion = make_fusion()
    gray = _images(1)
    torch.testing.assert_close(fusion(gray), fusion(gray.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-6)


def test_grid_pooling_averages_back_to_global_pooling(make_fusion):
    """Each g x g block holds one channel's cell means: their average is the global average of the feature map."""
    fusion = make_fusion(["test_resnet"], pooling="grid", grid=2, image_size=64)
    backbone = fusion.backbones[0]
    images = _images(1, size=64)
    grid = fusion(images).reshape(2, -1, 4)  # (B, C, g*g)
    feature_map = backbone.model.forward_features(backbone.prepare(images))  # (B, C, h, w)
    torch.testing.assert_close(grid.mean(dim=2), feature_map.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


# ---- freezing ------------------------------------------------------------------------------------------------


def _model(fusion):
    tasks = [BinaryTask("nodule"), RegressionTask("size")]
    return MultiTaskModel(fusion, ResidualSharedTrunk(fusion.num_features, hidden=8, depth=1), tasks)


def test_frozen_backbones_stay_in_eval_mode_without_gradients(make_fusion):
    fusion = make_fusion()
    model = _model(fusion)
    model.train()
    assert model.trunk.training
    assert not any(m.training for m in fusion.modules())
    assert not any(p.requires_grad for p in fusion.parameters())
    norms = [m for m in fusion.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats_before = [m.running_mean.clone() for m in norms]
    outputs = model(_images(1))
    sum(o.sum() for o in outputs.values()).backward()
    assert all(p.grad is None for p in fusion.parameters())
    assert all(p.grad is not None for p in model.trunk.parameters())
    assert norms and all(torch.equal(b, m.running_mean) for b, m in zip(stats_before, norms, strict=True))
    assert not fusion(_images(1).requires_grad_(True)).requires_grad


def test_unfrozen_backbones_train_and_receive_gradients(make_fusion):
    fusion = make_fusion(["test_resnet"], frozen=False)
    model = _model(fusion)
    model.train()
    assert fusion.training and fusion.backbones[0].model.training
    sum(o.sum() for o in model(_images(1)).values()).backward()
    assert all(p.grad is not None for p in fusion.parameters() if p.requires_grad)
    assert any(k.startswith("fusion.") for k in model.head_state_dict())


# ---- names ---------------------------------------------------------------------------------------------------


def test_unknown_backbone_name_suggests_close_names():
    with pytest.raises(MTLError, match="Did you mean 'test_resnet'"):
        BackboneFusion(["test_resnet", "test_resnt"], weights="random", image_size=SIZE)


@pytest.mark.parametrize(("names", "options", "words"), [
    ([], {}, "at least one"),
    (["test_resnet", "test_resnet"], {}, "unique"),
    (["test_resnet"], {"pooling": "max"}, "pooling"),
    (["googlenet"], {"pooling": "grid"}, "no feature map"),  # a torchvision model without a `features` block
])
def test_invalid_fusion_settings_raise_mtl_error(names, options, words):
    with pytest.raises(MTLError, match=words):
        BackboneFusion(names, weights="random", image_size=SIZE, **options)


def test_weights_for_an_unknown_backbone_name_are_an_error():
    with pytest.raises(MTLError, match="Did you mean 'test_resnet'"):
        BackboneFusion(["test_resnet"], weights={"test_resnt": "random"}, image_size=SIZE)


def test_empty_weights_dict_means_the_default():
    fusion = BackboneFusion(["test_resnet"], weights={}, image_size=SIZE)
    assert fusion.infos[0].weights in ("pretrained", "random")


# ---- weights -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_of_another_architecture_are_a_weights_error_naming_the_backbone(tmp_path, make_fusion, suffix):
    donor = make_fusion(["test_efficientnet"])
    path = _save_state(donor.backbones[0].model, tmp_path / f"effnet{suffix}")
    with pytest.raises(WeightsError, match="test_resnet") as info:
        make_fusion(["test_resnet", "test_efficientnet"], weights={"test_resnet": str(path),
                                                                   "test_efficientnet": "random"})
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("suffix", "wrap"), [(".safetensors", False), (".pth", False), (".pth", True)],
                         ids=["safetensors", "pth", "pth-wrapped"])
def test_weights_file_of_the_same_architecture_loads_and_changes_the_features(tmp_path, make_fusion, suffix, wrap):
    donor = make_fusion(["test_resnet"], seed=7)
    path = _save_state(donor.backbones[0].model, tmp_path / f"resnet{suffix}", wrap=wrap)
    default = make_fusion(["test_resnet"])
    loaded = make_fusion(["test_resnet"], weights={"test_resnet": str(path)})
    images = _images(1)
    assert not torch.allclose(loaded(images), default(images))
    torch.testing.assert_close(loaded(images), donor(images), rtol=0, atol=0)
    assert loaded.infos[0].weights == "file"
    assert loaded.infos[0].weights_id == f"sha256:{file_digest(path)}"
    assert not loaded.uses_random_weights


_UNPICKLED: list[str] = []


def _record_unpickling() -> dict:
    _UNPICKLED.append("code ran")
    return {}


class _Payload:
    def __reduce__(self):
        return (_record_unpickling, ())


@pytest.mark.parametrize("content", ["pickle", "garbage", "missing"])
def test_unusable_weights_file_is_a_weights_error_and_never_runs_code(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "pickle":
        torch.save({"state_dict": _Payload()}, path)
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="weights file"):
        Backbone("test_resnet", weights=path, image_size=SIZE)
    assert _UNPICKLED == []


def test_random_weights_are_deterministic_for_a_seed_and_leave_the_global_rng_alone(make_fusion):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = make_fusion(seed=3)
    assert torch.equal(torch.rand(3), expected_draw)
    second, other = make_fusion(seed=3), make_fusion(seed=4)
    images = _images(1)
    assert torch.equal(first(images), second(images))
    assert not torch.allclose(first(images), other(images))
    assert [i.weights_id for i in first.infos] == ["random-seed-3", "random-seed-4"]
    assert first.uses_random_weights


def test_missing_pretrained_weights_fall_back_to_random_or_raise(caplog):
    if pretrained_available("test_resnet"):
        pytest.skip("pretrained test_resnet weights are cached on this machine")
    fusion = BackboneFusion(["test_resnet"], weights="pretrained", image_size=SIZE)
    assert fusion.uses_random_weights and "RANDOM INITIALISATION" in caplog.text
    with pytest.raises(WeightsError, match="test_resnet"):
        BackboneFusion(["test_resnet"], weights="pretrained", image_size=SIZE, on_missing_weights="error")
