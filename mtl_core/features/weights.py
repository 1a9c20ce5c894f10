"""Where backbone weights come from: a local file, an installed weights package, an existing cache, the hub (only if
allowed), or nowhere.

Nothing here downloads unless ``allow_download`` is true. A weights file is read with safetensors or with
``torch.load(..., weights_only=True)``, so loading one never runs code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .memo import recall, remember
from .names import backbone_source
from .small_cnn import LOCAL_BACKBONES
from .weight_packages import find_package_weights

log = logging.getLogger(__name__)



def _hub_checkpoint(url: str) -> Path:
    """Where torch.hub keeps a file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def cached_timm_weights(pretrained_cfg: dict) -> tuple[Path | None, list[Path]]:
    """A cached pretrained file for a timm model (Hugging Face cache or torch hub cache) or None, and the places
    looked at (whose change can change the answer)."""
    places: list[Path] = []
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import constants, try_to_load_from_cache
        except ImportError:  # pragma: no cover - timm depends on huggingface_hub
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.split('@')[0].replace('/', '--')}"
            places += [repo, repo / "refs" / "main"]  # a new revision moves refs/main
            for filename in ("model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found), [*places, Path(found)]
    url = pretrained_cfg.get("url")
    if url:
        places.append(_hub_checkpoint(url))
        if places[-1].is_file():
            return places[-1], places
    return None, places


def torchvision_weights(name: str) -> object | None:
    """torchvision's default weights enum for model ``name``, or None when it has none."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def local_weights_file(name: str) -> Path | None:
    """A file named after the backbone in ``$MTL_WEIGHTS_DIR`` (``<name>.safetensors`` or ``.pth``), if any."""
    folder = os.environ.get("MTL_WEIGHTS_DIR")
    if not folder:
        return None
    for suffix in (".safetensors", ".pth", ".pt", ".bin"):
        candidate = Path(folder) / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _look_up(name: str) -> tuple[Path | None, list[Path]]:
    """The hub caches' file of ``name``'s pretrained weights (or None) and the places looked at."""
    if backbone_source(name) == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(name)
        return cached_timm_weights(cfg.to_dict()) if cfg is not None else (None, [])
    weights = torchvision_weights(name)
    if weights is None:
        return None, []
    candidate = _hub_checkpoint(weights.url)
    return (candidate if candidate.is_file() else None), [candidate]


def pretrained_file(name: str, *, fresh: bool = False) -> Path | None:
    """The file of ``name``'s pretrained ImageNet weights in an installed weights package
    (:mod:`mtl_core.features.weight_packages`), else in the Hugging Face or torch hub cache, or None.

    The hub caches' answer is remembered (:mod:`mtl_core.features.memo`) until one of the places looked at changes, so
    that
    asking again imports neither timm nor torchvision; ``fresh`` looks again (building a backbone always does).
    """
    if name in LOCAL_BACKBONES:
        return None  # the engine's own small CNNs have no pretrained weights but a local file
    # A weights package comes before the hub caches: it is a declared dependency, so a name means the same weights
    # on every machine with the same distributions, whatever other programs left in the caches (timm's own
    # efficientnet_lite0 weights there would otherwise change the features). Its look-up imports nothing, so it
    # needs no memo, and the memo's answers stay those of the caches alone.
    packaged = find_package_weights(name)
    if packaged is not None:
        return packaged.path
    if not fresh:
        known = recall("weights", {"name": name})
        if known is not None:
            return Path(known["file"]) if known["file"] else None
    found, places = _look_up(name)
    if found is not None or not any(p.exists() for p in places):  # a half-filled cache folder: look every time
        remember("weights", {"name": name}, {"file": None if found is None else str(found)}, places)
    return found


def pretrained_available(name: str) -> bool:
    """True when pretrained weights for ``name`` are on this machine (``$MTL_WEIGHTS_DIR``, an installed weights
    package or a hub cache)."""
    return local_weights_file(name) is not None or pretrained_file(name) is not None
