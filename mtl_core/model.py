"""``MultiTaskModel``: fusion -> residual shared trunk -> one head per task."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .backbones import BackboneFusion
from .errors import MTLError
from .tasks import Task
from .trunk import ResidualSharedTrunk


class MultiTaskModel(nn.Module):
    """Composes a :class:`BackboneFusion`, a :class:`ResidualSharedTrunk` and one linear head per task.

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

    def __init__(self, fusion: BackboneFusion | None, trunk: ResidualSharedTrunk, tasks: list[Task]) -> None:
        super().__init__()
        names = [t.name for t in tasks]
        if not tasks or len(set(names)) != len(names):
            raise MTLError(f"a model needs at least one task and unique task names, got {names}")
        self.fusion = fusion
        self.trunk = trunk
        # Per-feature standardisation of the fused vector, fit on the training features (identity until fit).
        self.register_buffer("feature_mean", torch.zeros(trunk.fc1[1].in_features))
        self.register_buffer("feature_std", torch.ones(trunk.fc1[1].in_features))
        self.heads = nn.ModuleDict({t.name: nn.Linear(trunk.out_features, t.out_features) for t in tasks})

    @torch.no_grad()
    def fit_feature_norm(self, features: torch.Tensor, rows: np.ndarray | None = None,
                         chunk_elements: int = 1 << 20) -> None:
        """Standardise each fused feature with the mean and std of the training features: ``features[rows]``
        (all of ``features`` (N, F) when ``rows`` is None), read in chunks of rows (two passes in float64), so
        that no copy of the training part is made."""
        rows = np.arange(len(features)) if rows is None else np.asarray(rows)
        chunk = max(1, chunk_elements // max(1, features.shape[1]))  # ~8 MB of float64 per pass
        parts = [torch.as_tensor(rows[i:i + chunk]) for i in range(0, len(rows), chunk)]
        total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
        for part in parts:
            total += features[part].double().sum(dim=0)
        mean = total / max(len(rows), 1)
        self.feature_mean.copy_(mean)
        if len(rows) > 1:
            squares = torch.zeros_like(mean)
            for part in parts:
                squares += ((features[part].double() - mean) ** 2).sum(dim=0)
            std = (squares / (len(rows) - 1)).sqrt().float()
            # A feature (nearly) constant in training must not explode on new cases: floor at 1% of the mean std.
            self.feature_std.copy_(std.clamp(min=max(1e-6, 1e-2 * float(std.mean()))))

    def forward_features(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fused features (B, F) -> {task: (B, out_features)}."""
        features = (features - self.feature_mean) / self.feature_std
        shared = self.trunk(features)  # (B, hidden)
        return {name: head(shared) for name, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 1|3, H, W) in [0, 1] -> {task: (B, out_features)}."""
        if self.fusion is None:
            raise MTLError("this model has no backbones attached; call forward_features with cached features")
        return self.forward_features(self.fusion(images))

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Trunk and head weights (and backbone weights when the backbones are trained)."""
        state = {"feature_mean": self.feature_mean, "feature_std": self.feature_std}
        state.update({f"trunk.{k}": v for k, v in self.trunk.state_dict().items()})
        state.update({f"heads.{k}": v for k, v in self.heads.state_dict().items()})
        if self.fusion is not None and not self.fusion.frozen:
            state.update({f"fusion.{k}": v for k, v in self.fusion.state_dict().items()})
        return state
