"""adaptive_mean: adaptive average pooling that an ONNX export can express after a backbone whose padding is computed
from its input (timm's "same" padding of the tf_ EfficientNets, the JSRT example's backbones)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import create_conv2d
from torch import nn

from mtl_core.features.backbones import _mean_matrix, adaptive_mean

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("height, width, out", [(7, 7, 3), (16, 9, 5), (14, 14, 14), (10, 11, 1), (5, 6, 2)])
def test_the_averaging_matrices_give_adaptive_pooling(height, width, out):
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    pooled = _mean_matrix(height, out, x) @ x @ _mean_matrix(width, out, x).T
    assert torch.allclose(pooled, F.adaptive_avg_pool2d(x, out), atol=1e-6)


class _SamePadded(nn.Module):
    """A strided "same"-padded convolution (its padding computed from the input's size), then pooling to 3 x 3."""

    def __init__(self, pool) -> None:
        super().__init__()
        self.conv, self.pool = create_conv2d(3, 4, 3, stride=2, padding="same"), pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x), 3).flatten(1)


def _export(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.rand(2, 3, 37, 37),), buffer, input_names=["image"], output_names=["out"],
                      dynamic_axes={"image": {0: "batch"}, "out": {0: "batch"}}, opset_version=18, dynamo=False)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_same_padded_map_pools_in_onnx_with_a_dynamic_batch():
    torch.manual_seed(0)
    module = _SamePadded(adaptive_mean).eval()
    with pytest.raises(Exception, match="adaptive_avg_pool2d"):  # what adaptive_mean is there for
        _export(_SamePadded(F.adaptive_avg_pool2d).eval())
    session = onnxruntime.InferenceSession(_export(module), providers=["CPUExecutionProvider"])
    images = torch.rand(5, 3, 37, 37, generator=torch.Generator().manual_seed(1))  # another batch size
    (got,) = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, module(images).numpy(), atol=1e-5)
