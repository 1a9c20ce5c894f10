"""Heatmap localisation on a feature map: the head, its targets and losses, and soft-argmax decoding.

Coordinates here are fractions of the frame, ``u = x / width`` and ``v = y / height`` in [0, 1]; cell ``(i, j)``
of an ``S x S`` map covers ``[j / S, (j + 1) / S)`` in ``u`` and its centre is ``(j + 0.5) / S``.

Two kinds of loss train the same logits, each for what it is good at:

- a Gaussian focal loss (CornerNet, Law & Deng 2018; CenterNet, Zhou et al. 2019) on every cell: images without a
  target push every cell down, images with one push the cell holding the point up and its neighbours less;
- a location loss on the spatial softmax of the same logits times a learned scale (an inverse temperature): the
  cross-entropy of that distribution against the Gaussian target (it calibrates the scale, so the softmax is as
  sharp as the evidence allows: a faint nodule gives a spread distribution whose mean stays near the likely
  places, a clear one a peak), plus a DSNT-style L1 (Nibali et al. 2018) between its mean (the soft-argmax that
  decoding uses) and the true point, so the error the metrics report is what training lowers, at sub-cell
  precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cell_centres(size: int, device: torch.device | None = None) -> torch.Tensor:
    """Centres of ``size`` cells along one axis, as fractions of the frame: (size,)."""
    return (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size


def spatial_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the cells of each map: (B, S, S) -> (B, S, S) summing to 1."""
    b, h, w = logits.shape
    return torch.softmax(logits.float().reshape(b, h * w) / temperature, dim=1).reshape(b, h, w)


def soft_argmax(logits: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected location (u, v) under the spatial softmax: (B, S, S) -> (B, 2), and the probabilities (B, S, S).

    A convex combination of cell centres, so the point always lies inside the frame.
    """
    p = spatial_softmax(logits, temperature)
    cu, cv = cell_centres(p.shape[2], p.device), cell_centres(p.shape[1], p.device)
    u = (p.sum(dim=1) * cu).sum(dim=1)  # marginal over rows, then columns
    v = (p.sum(dim=2) * cv).sum(dim=1)
    return torch.stack([u, v], dim=1), p


def local_soft_argmax(logits: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax restricted to the cells within ``radius`` (Chebyshev) of each map's highest cell: (B, S, S) ->
    (B, 2) and the window's probabilities (B, S, S), zero outside it.

    Integral regression around the maximum (as in human-pose estimation): the precision of a soft-argmax without
    the pull towards the centre that faint responses elsewhere give a global one, and still a convex combination
    of cell centres, so the point lies inside the frame."""
    b, h, w = logits.shape
    peak = logits.reshape(b, -1).argmax(dim=1)
    rows = torch.arange(h, device=logits.device).view(1, h, 1)
    cols = torch.arange(w, device=logits.device).view(1, 1, w)
    near = ((rows - (peak // w).view(b, 1, 1)).abs() <= radius) & ((cols - (peak % w).view(b, 1, 1)).abs() <= radius)
    masked = logits.float().masked_fill(~near, float("-inf"))
    return soft_argmax(masked)


def gaussian_targets(points: torch.Tensor, present: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Target heatmaps (B, S, S): 1 at the cell holding each point, a Gaussian of ``sigma`` cells around it, and 0
    everywhere for cases without a point. ``points`` (B, 2) are (u, v) fractions, ``present`` (B,) bool."""
    centre = (points.clamp(0, 1 - 1e-6) * size).floor() + 0.5  # (B, 2) in cells: the peak sits on a cell centre
    grid = torch.arange(size, device=points.device, dtype=torch.float32) + 0.5
    du = (grid.view(1, 1, size) - centre[:, 0].view(-1, 1, 1)) ** 2  # (B, 1, S)
    dv = (grid.view(1, size, 1) - centre[:, 1].view(-1, 1, 1)) ** 2  # (B, S, 1)
    heat = torch.exp(-(du + dv) / (2 * sigma**2))  # (B, S, S)
    return heat * present.view(-1, 1, 1).float()


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                        beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced focal loss per case (B,): CornerNet's, with the sum over cells divided by the number of
    peaks (one per case with a point, at least one), so that an image without a target counts like one with."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    peak = target >= 1.0 - 1e-6
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    positive = -log_p * (1 - p) ** alpha
    negative = -log_not_p * p**alpha * (1 - target) ** beta
    per_cell = torch.where(peak, positive, negative)  # (B, S, S)
    return per_cell.flatten(1).sum(dim=1) / peak.flatten(1).sum(dim=1).clamp(min=1)


def expected_extent(extent_map: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """The extent read at the found location: its mean under the spatial softmax. (B, S, S) x2 -> (B,)."""
    return (extent_map.float() * probabilities).flatten(1).sum(dim=1)


class HeatmapHead(nn.Module):
    """A small convolutional head on a feature map: ``1x1 -> ReLU -> 3x3 -> ReLU -> 1x1``, or one ``1x1`` (a
    linear score per cell) when ``width`` is 0.

    Two coordinate channels (CoordConv, Liu et al. 2018) are appended to the input, so the head can learn where
    targets may lie (nodules inside the lungs) as well as what they look like.

    Output (B, 2 + with_extent, S, S): channel 0 the per-cell presence logits (read with a sigmoid), channel 1 the
    same logits times a learned scale, whose spatial softmax is the distribution of the location (the scale is
    the inverse temperature that the location loss calibrates), channel 2 the extent (normalised units).

    Example:
        >>> head = HeatmapHead(in_channels=8, width=4, with_extent=True)
        >>> head(torch.zeros(2, 8, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, in_channels: int, width: int = 0, with_extent: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        outputs = 1 + int(with_extent)
        if width == 0:
            self.body = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(in_channels + 2, outputs, 1))
        else:
            self.body = nn.Sequential(
                nn.Dropout2d(dropout), nn.Conv2d(in_channels + 2, width, 1), nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, outputs, 1))
        nn.init.constant_(self.body[-1].bias[:1], -4.0)  # start from "nothing here" (CenterNet's prior)
        self.log_scale = nn.Parameter(torch.tensor(1.0))  # softmax over e * logits: sharper than the raw logits

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, 2 + with_extent, S, S)."""
        b, _, h, w = maps.shape
        v = cell_centres(h, maps.device).view(1, 1, h, 1).expand(b, 1, h, w)
        u = cell_centres(w, maps.device).view(1, 1, 1, w).expand(b, 1, h, w)
        raw = self.body(torch.cat([maps, u.to(maps.dtype), v.to(maps.dtype)], dim=1))
        return torch.cat([raw[:, :1], raw[:, :1] * self.log_scale.exp(), raw[:, 1:]], dim=1)


def location_cross_entropy(location_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per case (B,) of the spatial softmax of ``location_logits`` (B, S, S) against ``target`` heat
    maps (B, S, S) normalised to distributions; zero for a case whose target is all zero."""
    b = len(target)
    mass = target.reshape(b, -1).sum(dim=1, keepdim=True)
    dist = target.reshape(b, -1) / mass.clamp(min=1e-12)
    return -(dist * torch.log_softmax(location_logits.float().reshape(b, -1), dim=1)).sum(dim=1)
