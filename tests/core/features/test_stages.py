"""Tests for mtl_core.features.stages: partial fine-tuning trains the last N stages of each backbone and leaves
the others, batch-norm statistics included, as loaded."""

from __future__ import annotations

import copy

import pytest
import torch

from mtl_core.config import ModelConfig, validate_model
from mtl_core.errors import ConfigError
from mtl_core.features.stages import stage_names


def _trained_names(backbone) -> set[str]:
    return {name.split(".")[0] for name, p in backbone.model.named_parameters() if p.requires_grad}


def test_the_last_n_stages_train_and_the_others_stay_as_loaded(make_fusion):
    fusion = make_fusion(["test_resnet", "mtl_small_cnn"], frozen=False, trainable_stages=2)
    resnet, small = fusion.backbones
    assert _trained_names(resnet) == {"layer3", "layer4"}  # timm's stages: stem, layer1 ... layer4
    assert len(stage_names(small.model)) >= 3 and any(p.requires_grad for p in small.parameters())
    assert not all(p.requires_grad for p in small.parameters())
    before = copy.deepcopy(fusion.state_dict())
    fusion.train()
    assert not resnet.model.bn1.training and resnet.model.layer4.training  # frozen stages stay in eval mode
    optimiser = torch.optim.SGD([p for p in fusion.parameters() if p.requires_grad], lr=0.1)
    fusion(torch.rand(4, 1, 32, 32)).square().mean().backward()
    optimiser.step()
    after = fusion.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("backbones.0.model.layer4.") for k in changed)
    assert not [k for k in changed if k.startswith(("backbones.0.model.bn1", "backbones.0.model.layer1"))]


def test_more_stages_than_a_backbone_has_and_frozen_stages_are_refused(make_fusion):
    with pytest.raises(ConfigError, match="backbone 'test_resnet' has 5 stages, got model.trainable_stages 6"):
        make_fusion(["test_resnet"], frozen=False, trainable_stages=6)
    with pytest.raises(ConfigError, match="set model.frozen: false"):
        validate_model(ModelConfig, {"trainable_stages": 2}, "config")
