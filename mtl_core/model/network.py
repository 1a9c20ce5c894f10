"""``MultiTaskModel``: fusion -> residual shared trunk -> one head per task (spatial heads read the feature map)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import MTLError
from ..features import BackboneFusion
from ..tasks import Task
from .sharing import create_trunk
from .trunk import ResidualSharedTrunk


class MultiTaskModel(nn.Module):
    """Composes a :class:`BackboneFusion`, a :class:`ResidualSharedTrunk` and one head per task.

    With pooled features (``map_shape`` None) the trunk reads the fused vector. With feature maps (``map_shape``
    (C, S, S), ``pooling: map``) the trunk reads each channel's mean and maximum over the map (width 2C), and
    spatial tasks (a point task) read the standardised map itself; with ``share_point_evidence`` the global heads
    also read each heatmap's strongest response (max and log-sum-exp of its logits), so a "something is there"
    that the heatmap already encodes can inform a classification.

    The same weights run from images (``model(images)``) or from cached fused features
    (``model.forward_features(features)``), so a model trained on cached features predicts on new images directly.

    Example:
        >>> from mtl_core import BackboneFusion, ClassificationTask, RegressionTask, ResidualSharedTrunk
        >>> fusion = BackboneFusion(["test_resnet"], weights="random", image_size=32)
        >>> tasks = [ClassificationTask("kind", classes=["a", "b"]), RegressionTask("size")]
        >>> model = MultiTaskModel(fusion, ResidualSharedTrunk(fusion.num_features, hidden=16), tasks)
        >>> sorted(model(torch.rand(2, 1, 32, 32)))
        ['kind', 'size']
    """

    def __init__(self, fusion: BackboneFusion | None, trunk: ResidualSharedTrunk | nn.Module, tasks: list[Task],
                 map_shape: tuple[int, int, int] | None = None, share_point_evidence: bool = False) -> None:
        super().__init__()
        names = [t.name for t in tasks]
        if not tasks or len(set(names)) != len(names):
            raise MTLError(f"a model needs at least one task and unique task names, got {names}")
        spatial = [t.name for t in tasks if t.spatial]
        if spatial and map_shape is None:
            raise MTLError(f"task {spatial[0]!r} reads feature maps; set model.pooling to 'map' (pooled vectors "
                           f"cannot say where something is)")
        self.fusion = fusion
        self.trunk = trunk
        self.map_shape = None if map_shape is None else tuple(int(v) for v in map_shape)
        self.spatial = spatial
        self.share_point_evidence = bool(share_point_evidence and spatial)
        width = trunk.in_features
        if self.map_shape is not None and width != 2 * self.map_shape[0]:
            raise MTLError(f"with feature maps of {self.map_shape[0]} channels the trunk reads their mean and maximum: "
                           f"in_features must be {2 * self.map_shape[0]}, got {width}")
        # Per-feature standardisation of the fused vector, fit on the training features (identity until fit).
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_std", torch.ones(width))
        if self.map_shape is not None:  # and of each map channel over every cell
            self.register_buffer("map_mean", torch.zeros(self.map_shape[0]))
            self.register_buffer("map_std", torch.ones(self.map_shape[0]))
        evidence = 2 * len(spatial) if self.share_point_evidence else 0
        self.heads = nn.ModuleDict({t.name: t.create_head(self.map_shape[0] if t.name in spatial else
                                                          trunk.out_features + evidence) for t in tasks})

    @torch.no_grad()
    def fit_feature_norm(self, features: torch.Tensor, rows: np.ndarray | None = None,
                         chunk_elements: int = 1 << 20) -> None:
        """Standardise each fused feature with the mean and std of the training features: ``features[rows]``
        (all of ``features`` (N, F) when ``rows`` is None), read in chunks of rows (two passes in float64), so
        that no copy of the training part is made. With feature maps, each map channel is standardised over all
        its cells, and the pooled vector that feeds the trunk gets its own statistics."""
        rows = np.arange(len(features)) if rows is None else np.asarray(rows)
        chunk = max(1, chunk_elements // max(1, features.shape[1]))  # ~8 MB of float64 per pass
        parts = [torch.as_tensor(rows[i:i + chunk]) for i in range(0, len(rows), chunk)]
        if self.map_shape is None:
            _fit_norm([lambda p=p: features[p].double() for p in parts], self.feature_mean, self.feature_std)
            return
        c = self.map_shape[0]
        cells = [lambda p=p: features[p].double().view(-1, c, self.map_shape[1] * self.map_shape[2])
                 .transpose(1, 2).reshape(-1, c) for p in parts]  # (n * S * S, C)
        _fit_norm(cells, self.map_mean, self.map_std)
        _fit_norm([lambda p=p: self._pooled(self._maps(features[p])).double() for p in parts],
                  self.feature_mean, self.feature_std)

    def _maps(self, features: torch.Tensor) -> torch.Tensor:
        """Flattened maps (B, C * S * S) -> standardised maps (B, C, S, S) in float32."""
        maps = features.float().view(-1, *self.map_shape)  # -1, not len(): a traced graph keeps its batch axis
        return (maps - self.map_mean.view(1, -1, 1, 1)) / self.map_std.view(1, -1, 1, 1)

    @staticmethod
    def _pooled(maps: torch.Tensor) -> torch.Tensor:
        """The vector the global tasks read from maps: each channel's mean and maximum over the cells (the maximum
        keeps a small thing that the mean of a whole image dilutes). (B, C, S, S) -> (B, 2C)."""
        return torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)

    def embedding(self, features: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised vector the trunk reads (B, width): the fused features, or the pooled maps (B, 2C)."""
        if self.map_shape is not None:
            features = self._pooled(self._maps(features) if maps is None else maps)  # (B, 2C)
        return (features - self.feature_mean) / self.feature_std

    def forward_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fused features (B, F) -> {task: (B, out_features)}; a spatial task gets (B, out_features, S, S)."""
        maps = None if self.map_shape is None else self._maps(features)  # (B, C, S, S)
        shared = self.trunk(self.embedding(features, maps))  # (B, hidden), or {task: (B, hidden)} (sharing.py)
        views = shared if isinstance(shared, dict) else {name: shared for name in self.heads}
        out = {name: self.heads[name](maps) for name in self.spatial}
        if self.share_point_evidence:  # what each heatmap says about presence, for the global tasks to use
            logits = [out[name][:, 0].flatten(1) for name in self.spatial]  # (B, S * S) each
            evidence = [torch.stack([v.max(dim=1).values, v.logsumexp(dim=1)], dim=1) for v in logits]
            views = {name: torch.cat([view, *evidence], dim=1) for name, view in views.items()}
        out.update({name: head(views[name]) for name, head in self.heads.items() if name not in self.spatial})
        return {name: out[name] for name in self.heads}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 1|3, H, W) in [0, 1] -> {task: (B, out_features)}."""
        if self.fusion is None:
            raise MTLError("this model has no backbones attached; call forward_features with cached features")
        return self.forward_features(self.fusion(images))

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Trunk and head weights (and backbone weights when the backbones are trained)."""
        state = {"feature_mean": self.feature_mean, "feature_std": self.feature_std}
        if self.map_shape is not None:
            state.update({"map_mean": self.map_mean, "map_std": self.map_std})
        state.update({f"trunk.{k}": v for k, v in self.trunk.state_dict().items()})
        state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        if self.fusion is not None and not self.fusion.frozen:
            state.update({f"fusion.{k}": v for k, v in self.fusion.state_dict().items()})
        return state


def create_model(fusion: BackboneFusion, tasks: list[Task], trunk_options: dict, share_heatmap: bool = False,
                 attach: bool = True) -> MultiTaskModel:
    """A model over ``fusion``'s output: a trunk (``trunk_options["architecture"]``, see :mod:`.sharing`) as wide
    as its vector (or its map's channels, pooled), the tasks' heads, and the fusion itself when ``attach`` (else the
    model runs on cached features only)."""
    shape = getattr(fusion, "map_shape", None)
    width = 2 * shape[0] if shape else fusion.num_features  # maps: each channel's mean and max
    trunk = create_trunk(width, [t.name for t in tasks], trunk_options)
    return MultiTaskModel(fusion if attach else None, trunk, tasks, map_shape=shape, share_point_evidence=share_heatmap)


def _fit_norm(chunks: list, mean_out: torch.Tensor, std_out: torch.Tensor) -> None:
    """Mean and std (floored at 1% of the mean std) of the rows of every chunk, in float64, in two passes."""
    total, count = 0.0, 0
    for load in chunks:
        part = load()
        total, count = total + part.sum(dim=0), count + len(part)
    mean = total / max(count, 1)
    mean_out.copy_(mean)
    if count > 1:
        squares = 0.0
        for load in chunks:
            squares = squares + ((load() - mean) ** 2).sum(dim=0)
        std = (squares / (count - 1)).sqrt().float()
        # A feature (nearly) constant in training must not explode on new cases: floor at 1% of the mean std.
        std_out.copy_(std.clamp(min=max(1e-6, 1e-2 * float(std.mean()))))
