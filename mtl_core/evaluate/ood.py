"""Is a new image like the training images? A nearest-neighbour distance in the model's input space, calibrated.

The score of an image is the mean Euclidean distance from its standardised features (what the trunk reads) to
its ``k`` nearest training cases, divided by a threshold: the ``quantile`` of the same distance over held-out
cases that the model never trained on. A score above 1 means the image lies farther from the training data than
all but ``1 - quantile`` of genuine held-out cases: ``mtl predict`` flags it instead of printing confident numbers
silently. Nearest neighbours assume nothing about the shape of the feature distribution (a Mahalanobis distance
would assume one Gaussian, and needs more cases than features to estimate it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import Split, TrainingInputs
from ..errors import RunError
from ..io import save_weights


def knn_distance(queries: torch.Tensor, reference: torch.Tensor, k: int, skip_self: bool = False) -> torch.Tensor:
    """Mean distance from each query (Q, F) to its ``k`` nearest rows of ``reference`` (M, F): (Q,).

    ``skip_self`` drops the nearest row (the query itself, when the queries are the reference)."""
    out = []
    for start in range(0, len(queries), 256):  # bounded memory: 256 x M distances at a time
        d = torch.cdist(queries[start:start + 256].double(), reference.double())  # (q, M)
        take = min(k + int(skip_self), reference.shape[0])
        nearest = d.topk(take, dim=1, largest=False).values[:, int(skip_self):]
        out.append(nearest.mean(dim=1))
    return torch.cat(out).float()


@dataclass
class DistanceCheck:
    """A calibrated out-of-distribution check (see the module docstring).

    Example:
        >>> train, held_out = torch.randn(200, 8), torch.randn(50, 8)
        >>> check = DistanceCheck.fit(train, held_out)
        >>> bool(check.scores(torch.full((1, 8), 10.0))[0] > 1)
        True
    """

    reference: torch.Tensor  # (M, F) training embeddings
    threshold: float
    k: int = 5
    quantile: float = 0.99
    calibrated_on: int = 0  # held-out cases behind the threshold

    @classmethod
    def fit(cls, train: torch.Tensor, held_out: torch.Tensor, k: int = 5, quantile: float = 0.99,
            max_reference: int = 5000, seed: int = 0) -> DistanceCheck:
        """Keep (at most ``max_reference``, drawn at random) training rows and calibrate on ``held_out``; with no
        held-out case, the training rows' leave-one-out distances calibrate instead."""
        train = train.float()
        if len(train) > max_reference:
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:max_reference]
            train = train[keep]
        k = max(1, min(k, len(train) - 1))
        if len(held_out):
            distances = knn_distance(held_out.float(), train, k)
        else:
            distances = knn_distance(train, train, k, skip_self=True)
        threshold = float(np.quantile(distances.numpy(), quantile)) if len(distances) else float("inf")
        return cls(train, max(threshold, 1e-12), k, quantile, int(len(distances)))

    def scores(self, embeddings: torch.Tensor) -> np.ndarray:
        """Distance / threshold per case (N,): above 1 is out of distribution."""
        return (knn_distance(embeddings.float(), self.reference, self.k) / self.threshold).numpy()

    def save(self, path: Path) -> None:
        """Write atomically as safetensors with the settings in its metadata (no pickle)."""
        meta = {"threshold": self.threshold, "k": self.k, "quantile": self.quantile,
                "calibrated_on": self.calibrated_on}
        save_weights(Path(path), {"reference": self.reference}, {"ood": json.dumps(meta)})

    @classmethod
    def load(cls, path: Path) -> DistanceCheck:
        """Read what :meth:`save` wrote."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {})["ood"])
                reference = fh.get_tensor("reference")
            return cls(reference, float(meta["threshold"]), int(meta["k"]), float(meta["quantile"]),
                       int(meta.get("calibrated_on", 0)))
        except Exception as exc:  # noqa: BLE001 - any damage: one line
            raise RunError(f"cannot read the out-of-distribution check {path} ({type(exc).__name__}); re-run "
                           f"`mtl run` to write it again") from None


@torch.no_grad()
def model_embeddings(model, inputs: torch.Tensor, rows: np.ndarray, is_features: bool,
                     batch_size: int = 64) -> torch.Tensor:
    """The model's standardised trunk input for ``inputs[rows]`` (cached features, or images through its fusion)."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = inputs[torch.as_tensor(rows[start:start + batch_size])]
        features = batch if is_features else model.fusion(batch)
        out.append(model.embedding(features.to(model.feature_mean.device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.feature_mean.numel())


def fit_check(model, inputs: TrainingInputs, split: Split) -> DistanceCheck:
    """A check for a trained model: training rows as reference, its validation and test rows as held-out cases."""
    held_out = np.concatenate([np.asarray(part, dtype=np.int64) for part in (split.val, split.test)])
    return DistanceCheck.fit(model_embeddings(model, inputs.tensor, np.asarray(split.train), inputs.is_features),
                             model_embeddings(model, inputs.tensor, held_out, inputs.is_features))
