"""Backbones by name (timm first, torchvision where timm lacks one) and their fusion by concatenation.

:class:`BackboneFusion` takes images in [0, 1] (B, 1 or 3, H, W), prepares them for each backbone (size,
channels, normalisation from the backbone's pretrained config), and concatenates the pooled feature vectors.
Pooling ``map`` keeps feature maps instead: the deepest ``map_levels`` levels of each backbone, each brought to
``map_size`` x ``map_size`` and concatenated along channels, flattened channel-major (see ``map_shape``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, MTLError, WeightsError
from ..io import file_digest
from ..registry import suggest
from .names import backbone_source
from .small_cnn import LOCAL_BACKBONES
from .stages import freeze_early_stages, keep_frozen_in_eval
from .state_dicts import fit_state_dict, read_state_dict
from .weight_packages import find_package_weights, load_package_weights
from .weights import local_weights_file, pretrained_file, torchvision_weights

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = ("avg", "grid", "map")


@dataclass(frozen=True)
class BackboneInfo:
    """What a run needs to know about one backbone, recorded in every run's outputs."""

    name: str
    source: str  # "timm" or "torchvision"
    num_features: int  # width of the pooled vector this backbone contributes
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # "pretrained", "random" or "file"
    weights_id: str  # identity of the weights: file digest, hub id, or "random-seed-N"
    map_channels: tuple[int, ...] | None = None  # pooling "map": channels of each kept level, shallowest first



def _build_timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0)


def _build_torchvision(name: str) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(name, weights=None, **({"aux_logits": False, "init_weights": True}
                                                                if name in ("googlenet", "inception_v3") else {}))
    for attr in ("fc", "classifier", "head", "heads"):
        if hasattr(model, attr):
            setattr(model, attr, nn.Identity())
            break
    return model


def _mean_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in): row i averages the inputs of adaptive pooling's window i, [floor(i n/m), ceil((i+1) n/m))."""
    rows = torch.zeros(n_out, n_in, dtype=like.dtype, device=like.device)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        rows[i, start:end] = 1.0 / (end - start)
    return rows


def adaptive_mean(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` (B, C, h, w) -> (B, C, *size); in an ONNX export, the same means as two products
    with averaging matrices: the exporter cannot express adaptive pooling once a backbone's padding is computed
    from its input ("same" padding of the tf_ EfficientNets), while the map sizes of a fixed image size are known."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, (out_h, out_w))
    height, width = int(x.shape[-2]), int(x.shape[-1])
    return _mean_matrix(height, out_h, x) @ x @ _mean_matrix(width, out_w, x).T  # (B, C, out_h, out_w)


def _to_grid(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size): cell means where the map is larger, bilinear where it is smaller."""
    if x.shape[-2] > size or x.shape[-1] > size:
        x = adaptive_mean(x, (min(x.shape[-2], size), min(x.shape[-1], size)))
    if x.shape[-2] < size or x.shape[-1] < size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class Backbone(nn.Module):
    """One backbone returning a pooled vector (B, F): global average, a coarse ``grid`` x ``grid`` map, or (pooling
    ``map``) its deepest ``map_levels`` feature maps at ``map_size`` x ``map_size``, flattened channel-major."""

    def __init__(self, name: str, *, weights: str | Path = "pretrained", pooling: str = "avg", grid: int = 2,
                 map_size: int = 32, map_levels: int = 3, image_size: int | None = None, allow_download: bool = False,
                 on_missing_weights: str = "random", seed: int = 0) -> None:
        super().__init__()
        self.pooling, self.grid, self.map_size, self.map_levels = pooling, grid, map_size, map_levels
        if pooling not in POOLINGS:
            raise MTLError(f"unknown pooling {pooling!r}; use 'avg', 'grid' or 'map'")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            source = backbone_source(name)
            if source == "mtl":
                self.model = LOCAL_BACKBONES.get(name)()
            else:
                self.model = _build_timm(name) if source == "timm" else _build_torchvision(name)
        kind, weights_id = self._load_weights(name, source, weights, allow_download, on_missing_weights, seed)
        mean, std, size = self._preprocessing(source)  # after the weights: a weights package says its own mean/std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        levels = self._map_channels(name, source, image_size or size) if pooling == "map" else None
        width = sum(levels) * map_size**2 if levels else self._width(source, image_size or size)
        self.info = BackboneInfo(name, source, width, image_size or size, tuple(mean), tuple(std), kind, weights_id,
                                 levels)

    def _preprocessing(self, source: str) -> tuple[tuple, tuple, int]:
        """Mean, std and input size: the pretrained config's (ImageNet's and 224 px for torchvision), with the mean
        and std of a weights package when its weights were loaded (they may differ from the config's)."""
        if source in ("timm", "mtl"):
            cfg = self.model.pretrained_cfg
            mean, std, size = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD), cfg["input_size"][-1]
        else:
            mean, std, size = IMAGENET_MEAN, IMAGENET_STD, 224
        mean, std = self._weights_norm or (mean, std)
        return tuple(mean), tuple(std), size

    def _width(self, source: str, size: int) -> int:
        if source in ("timm", "mtl") and self.pooling == "avg":
            # models with a pre-logits layer output head_hidden_size features, the others num_features
            return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        # torchvision models carry no width metadata, and a timm model's last feature map can be wider or narrower
        # than num_features (conv heads): measure it once on a blank image.
        return int(self._on_blank(self.pooled, size).shape[1])

    def _on_blank(self, fn, size: int) -> torch.Tensor:
        """``fn`` of a blank (1, 3, size, size) image in eval mode without gradients (the mode is restored)."""
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            out = fn(torch.zeros(1, 3, size, size))
            self.model.train(was_training)
        return out

    def _has_levels(self) -> bool:
        """True for timm models, whose ``feature_info`` and ``forward_intermediates`` give every level."""
        return hasattr(self.model, "feature_info") and hasattr(self.model, "forward_intermediates")

    def _map_channels(self, name: str, source: str, size: int) -> tuple[int, ...]:
        """Channels of the kept levels: timm's ``feature_info``, else the last map's (one level only)."""
        available = len(self.model.feature_info) if self._has_levels() else 1
        if self.map_size < 1:
            raise ConfigError(f"map size {self.map_size} for backbone {name!r}; set model.map_size between 4 and 128")
        if not 1 <= self.map_levels <= available:
            kinds = "" if self._has_levels() else " (only timm models give more than their last map)"
            raise ConfigError(f"backbone {name!r} offers {available} feature level(s){kinds}, got "
                              f"{self.map_levels}; set model.map_levels to at most {available}")
        if self._has_levels():
            return tuple(int(level["num_chs"]) for level in self.model.feature_info[-self.map_levels:])
        if source == "mtl":
            return (int(self.model.num_features),)
        return (int(self._on_blank(self._spatial_map, size).shape[1]),)  # torchvision: no width metadata

    def _load_weights(self, name: str, source: str, weights: str | Path, allow_download: bool,
                      on_missing: str, seed: int) -> tuple[str, str]:
        self._weights_norm: tuple[tuple, tuple] | None = None  # set by a weights package, read by _preprocessing
        if str(weights) == "random":
            return "random", f"random-seed-{seed}"
        if str(weights) != "pretrained":
            path = Path(weights).expanduser()
            fit_state_dict(self.model, read_state_dict(path), name, f"file {path}")
            return "file", f"sha256:{file_digest(path)}"
        found = local_weights_file(name) or pretrained_file(name, fresh=True)
        packaged = find_package_weights(name) if found is not None else None
        if packaged is not None and packaged.path == found:  # pretrained_file decides the order of the sources
            self._weights_norm = packaged.package.mean, packaged.package.std
            return "pretrained", load_package_weights(self.model, packaged)
        if found is not None:
            fit_state_dict(self.model, read_state_dict(found), name, f"file {found}")
            return "pretrained", f"sha256:{file_digest(found)}"
        if allow_download and source != "mtl":
            return self._download(name, source)
        message = (f"no pretrained weights for backbone {name!r} in the local caches and downloads are off; "
                   f"put <name>.safetensors in $MTL_WEIGHTS_DIR or give a weights file")
        if on_missing == "error":
            raise WeightsError(message)
        log.warning("%s -- USING RANDOM INITIALISATION (seed %d) for %s", message, seed, name)
        return "random", f"random-seed-{seed}"

    def _download(self, name: str, source: str) -> tuple[str, str]:
        if source == "timm":
            import timm

            try:
                fresh = timm.create_model(name, pretrained=True, num_classes=0)
            except Exception as exc:  # noqa: BLE001 - network or hub failures become one clear line
                raise WeightsError(f"cannot download pretrained weights for {name!r}: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
            fit_state_dict(self.model, fresh.state_dict(), name, "from the hub")
            return "pretrained", str(fresh.pretrained_cfg.get("hf_hub_id") or fresh.pretrained_cfg.get("url"))
        weights = torchvision_weights(name)
        if weights is None:
            raise WeightsError(f"torchvision has no pretrained weights for {name!r}")
        fit_state_dict(self.model, weights.get_state_dict(progress=False), name, "from torchvision")
        return "pretrained", str(weights)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to the backbone's input size, make 3 channels and normalise. Input (B, 1|3, H, W) in [0, 1]."""
        size = self.info.input_size
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1|3, H, W) in [0, 1] -> features (B, num_features)."""
        return self.pooled(self.prepare(images))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features) of a batch already prepared by :meth:`prepare`."""
        # torchvision models with a `features` block (AlexNet, VGG, DenseNet, EfficientNet, SqueezeNet...) are pooled
        # here: some of their heads keep spatial maps (SqueezeNet) or add fully connected layers (AlexNet, VGG)
        own_pooling = isinstance(self.model, nn.Module) and hasattr(self.model, "features") \
            and not hasattr(self.model, "forward_features")
        if self.pooling == "avg" and not own_pooling:
            return self.model(x).flatten(1)  # (B, F)
        if self.pooling == "map":
            maps = [_to_grid(level, self.map_size) for level in self.level_maps(x)]  # each (B, C_l, S, S)
            return torch.cat(maps, dim=1).flatten(1)  # (B, C * S * S), channel-major
        x = self._spatial_map(x)
        return adaptive_mean(x, self.grid if self.pooling == "grid" else 1).flatten(1)  # (B, C * g * g)

    def level_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The deepest ``map_levels`` feature maps of a prepared batch, shallowest first, each (B, C_l, h_l, w_l).

        timm models give their stage outputs (``forward_intermediates``; EfficientNet's strides 8, 16 and 32 for
        three levels); the other backbones give their last feature map only.
        """
        if self._has_levels():
            return list(self.model.forward_intermediates(x, indices=self.map_levels, intermediates_only=True))
        return [self._spatial_map(x)]

    def _spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, C, h, w) of a prepared batch, channels first."""
        x = self._feature_map(x)
        if x.ndim == 4 and getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            x = x.permute(0, 3, 1, 2)
        if x.ndim != 4:
            raise MTLError(f"backbone {self.model.__class__.__name__} has no spatial feature map; use pooling 'avg'")
        return x

    def _feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map: timm's forward_features, or a torchvision model's ``features`` block."""
        if hasattr(self.model, "forward_features"):
            return self.model.forward_features(x)  # (B, C, h, w), or (B, h, w, C) for channels-last models
        if not hasattr(self.model, "features"):
            raise MTLError(f"torchvision model {type(self.model).__name__} exposes no feature map; use pooling "
                           f"'avg' or a timm model for pooling 'grid' or 'map'")
        x = self.model.features(x)
        return F.relu(x) if type(self.model).__name__ == "DenseNet" else x  # torchvision's DenseNet applies it


class BackboneFusion(nn.Module):
    """Runs several backbones on the same images and concatenates their pooled features (multi-model fusion).

    Args:
        names: timm or torchvision model names, e.g. ``["densenet161", "efficientnet_b7"]``.
        weights: "pretrained", "random", or a dict name -> file path / "pretrained" / "random".
        frozen: keep the backbones in eval mode without gradients (feature extraction).
        trainable_stages: with ``frozen`` False, train only the last N stages of each backbone
            (:mod:`~mtl_core.features.stages`); None trains every stage.

    Example:
        >>> fusion = BackboneFusion(["test_resnet", "test_efficientnet"], weights="random", image_size=32)
        >>> fusion(torch.rand(2, 1, 32, 32)).shape[1] == fusion.num_features
        True
    """

    def __init__(self, names: list[str], *, weights: str | dict[str, str] = "pretrained", pooling: str = "avg",
                 grid: int = 2, map_size: int = 32, map_levels: int = 3, image_size: int | None = None,
                 frozen: bool = True, allow_download: bool = False, on_missing_weights: str = "random",
                 seed: int = 0, trainable_stages: int | None = None) -> None:
        super().__init__()
        if not names:
            raise MTLError("at least one backbone name is needed")
        if len(set(names)) != len(names):
            raise MTLError(f"backbone names must be unique, got {names}")
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise MTLError(f"weights given for {unknown[0]!r}, which is not among the backbones "
                               f"({', '.join(names)}); " + suggest(unknown[0], names, "backbone"))
        self.backbones = nn.ModuleList(
            Backbone(n, weights=weights.get(n, "pretrained") if isinstance(weights, dict) else weights,
                     pooling=pooling, grid=grid, map_size=map_size, map_levels=map_levels, image_size=image_size,
                     allow_download=allow_download, on_missing_weights=on_missing_weights, seed=seed + i)
            for i, n in enumerate(names))
        self.frozen = frozen
        self.pooling, self.grid, self.map_size, self.map_levels = pooling, grid, map_size, map_levels
        self.frozen_stages: list[str] = []  # modules of frozen stages (partial fine-tuning), kept in eval mode
        if frozen:
            self.requires_grad_(False)
            self.eval()
        elif trainable_stages is not None:
            for i, backbone in enumerate(self.backbones):
                frozen_here = freeze_early_stages(backbone.model, trainable_stages, backbone.info.name)
                self.frozen_stages += [f"backbones.{i}.model.{name}" for name in frozen_here]

    @property
    def infos(self) -> list[BackboneInfo]:
        """One :class:`BackboneInfo` per backbone, in order."""
        return [b.info for b in self.backbones]

    @property
    def num_features(self) -> int:
        """Width of the fused vector: the sum of the backbones' widths."""
        return sum(i.num_features for i in self.infos)

    @property
    def map_shape(self) -> tuple[int, int, int] | None:
        """(C, S, S) of the fused maps with pooling ``map`` (C summed over backbones and levels), else None:
        ``features.view(B, *map_shape)`` recovers the maps from the flat features."""
        if self.pooling != "map":
            return None
        return sum(sum(i.map_channels or ()) for i in self.infos), self.map_size, self.map_size

    @property
    def feature_dtype(self) -> torch.dtype:
        """dtype of extracted and cached features: float16 for maps (half the memory), float32 otherwise."""
        return torch.float16 if self.pooling == "map" else torch.float32

    @property
    def uses_random_weights(self) -> bool:
        """True when any backbone runs on random initialisation."""
        return any(i.weights == "random" for i in self.infos)

    def describe(self) -> list[dict]:
        """JSON-able description of the backbones (``map_channels`` only with pooling ``map``)."""
        return [{k: v for k, v in asdict(i).items() if v is not None} for i in self.infos]

    def checksum(self) -> str:
        """SHA-256 of every backbone tensor (``mtl predict`` checks that it rebuilt the very same backbones)."""
        digest = hashlib.sha256()
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def built(self) -> BackboneFusion:
        """The fusion itself (a :class:`~mtl_core.features.fusion.LazyFusion` builds one here)."""
        return self

    def train(self, mode: bool = True) -> BackboneFusion:
        """Frozen backbones, and the frozen stages of partly trained ones, stay in eval mode (their batch-norm
        statistics never move)."""
        super().train(mode and not self.frozen)
        keep_frozen_in_eval(self, self.frozen_stages)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1|3, H, W) in [0, 1] -> fused features (B, sum of widths); with pooling ``map`` (B, C * S * S),
        channel-major. Backbones with the same input size and normalisation (most ImageNet models) share one
        preprocessed batch."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            prepared: dict[tuple, torch.Tensor] = {}
            features = []
            for backbone in self.backbones:
                info = backbone.info
                key = (info.input_size, tuple(info.mean), tuple(info.std))
                if key not in prepared:
                    prepared[key] = backbone.prepare(images)
                features.append(backbone.pooled(prepared[key]))
            return torch.cat(features, dim=1)
