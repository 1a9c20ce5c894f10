"""Partial fine-tuning: a backbone's stages, and freezing all but the last N of them.

Fine-tuning only the deepest stages keeps the generic early filters of a pretrained network and trains what is
specific to the task (Yosinski et al. 2014, "How transferable are features in deep neural networks?"). A stage is
what timm's ``group_matcher(coarse=True)`` groups (the stem, then each stage or block group; the one timm uses for
layer-wise learning-rate decay); for a model without one (torchvision, the engine's own CNN), each top-level child
with parameters, looking through a single wrapping container.

Frozen stages get no gradient and stay in eval mode: their batch-norm statistics keep the loaded values
(:meth:`~mtl_core.features.backbones.BackboneFusion.train` puts them back in eval mode).

Example:
    >>> model = timm.create_model("test_resnet", num_classes=0)  # doctest: +SKIP
    >>> frozen = freeze_early_stages(model, 2)  # layer3 and layer4 train  # doctest: +SKIP
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError


def _own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def stage_names(model: nn.Module) -> list[list[str]]:
    """The names (as ``model.get_submodule`` takes them) of the modules of each stage, input first."""
    matcher = getattr(model, "group_matcher", None)
    if callable(matcher):
        from timm.models._manipulate import group_modules

        groups = group_modules(model, matcher(coarse=True))
        return [list(groups[key]) for key in sorted(groups)]
    prefix, children = "", list(model.named_children())
    while len(children) == 1 and len(list(children[0][1].children())) > 1:  # a wrapper: its children are stages
        prefix += children[0][0] + "."
        children = list(children[0][1].named_children())
    return [[prefix + name] for name, child in children if _own_parameters(child)]


def freeze_early_stages(model: nn.Module, trainable: int, name: str = "backbone") -> list[str]:
    """Freeze every parameter of ``model`` but those of its last ``trainable`` stages; returns the names of the
    frozen stages' modules (to keep in eval mode).

    Raises:
        ConfigError: ``model`` has fewer than ``trainable`` stages.
    """
    stages = stage_names(model)
    if not 1 <= trainable <= len(stages):
        raise ConfigError(f"backbone {name!r} has {len(stages)} stages, got model.trainable_stages {trainable}; set "
                          f"it between 1 and {len(stages)}, or remove it to train every stage")
    model.requires_grad_(False)
    for names in stages[-trainable:]:
        for module in names:
            model.get_submodule(module).requires_grad_(True)
    return [module for names in stages[:-trainable] for module in names]


def keep_frozen_in_eval(model: nn.Module, frozen: list[str]) -> None:
    """Put the frozen stages' modules back in eval mode (after ``model.train()``)."""
    for module in frozen:
        model.get_submodule(module).eval()
