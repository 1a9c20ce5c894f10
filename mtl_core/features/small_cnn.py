"""Small CNNs of the engine's own, for training end to end on a CPU when no pretrained weights exist.

They are backbones like any timm model (``forward_features`` gives the last feature map, ``forward`` the pooled
vector, ``num_features`` the width) and are found by name before timm and torchvision.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MTLError
from ..registry import Registry

LOCAL_BACKBONES: Registry = Registry("engine backbone", MTLError)


def _block(cin: int, cout: int) -> nn.Sequential:
    """Strided 3x3 conv then a 3x3 conv, each with batch norm and ReLU: halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A plain VGG-like CNN: ``len(widths)`` stride-2 stages, global average pooling.

    Args:
        widths: channels of each stage; the last is ``num_features``.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96), in_chans: int = 3) -> None:
        super().__init__()
        stages, cin = [], in_chans
        for width in widths:
            stages.append(_block(cin, width))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.num_features = widths[-1]
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 160, 160)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H / 2^stages, W / 2^stages)."""
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C)."""
        return self.forward_features(x).mean(dim=(2, 3))


@LOCAL_BACKBONES.register("mtl_small_cnn")
def mtl_small_cnn() -> SmallCNN:
    """Four stages of 16, 32, 64 and 96 channels (about 0.2 M parameters)."""
    return SmallCNN((16, 32, 64, 96))
