"""Which library builds a backbone name: the engine's own small CNNs, timm or torchvision."""

from __future__ import annotations

from ..errors import MTLError
from ..registry import suggest
from .small_cnn import LOCAL_BACKBONES


def _known_names() -> list[str]:
    import timm
    import torchvision

    return sorted(set(timm.list_models()) | set(torchvision.models.list_models(module=torchvision.models)))


def backbone_source(name: str) -> str:
    """Which library builds ``name``: timm when it has ImageNet weights for it, else torchvision when it has the
    model (e.g. ``efficientnet_b7``, ``googlenet``, ``alexnet``), else timm. The rule depends on the libraries'
    registries only, never on what is in a cache, so the same name always means the same network."""
    if name in LOCAL_BACKBONES:
        return "mtl"
    import timm
    import torchvision

    in_timm = timm.is_model(name)
    in_torchvision = name in torchvision.models.list_models(module=torchvision.models)
    if in_timm and (timm.list_pretrained(name) or timm.list_pretrained(f"{name}.*") or not in_torchvision):
        return "timm"
    if in_torchvision:
        return "torchvision"
    raise MTLError(suggest(name, _known_names(), "backbone"))
