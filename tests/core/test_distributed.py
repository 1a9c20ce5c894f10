"""mtl_core/distributed.py without torchrun: shares of a batch, loss scales, the timeout (docs/distributed.md).

The 2-process runs themselves are in tests/e2e/test_torchrun.py.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch

from mtl_core.data import TensorData
from mtl_core.distributed import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_ENV,
    Parallel,
    current_parallel,
    is_comm_failure,
    session,
    timeout_from_env,
)
from mtl_core.errors import ConfigError, RunError
from mtl_core.tasks import ClassificationTask, RegressionTask
from mtl_core.train import LossComposer


def _data(n: int) -> TensorData:
    targets = {"y": torch.arange(n, dtype=torch.float32)}
    return TensorData(torch.arange(n, dtype=torch.float32)[:, None], targets, {"y": torch.ones(n, dtype=torch.bool)},
                      [f"c{i}" for i in range(n)])


@pytest.mark.parametrize("world", [2, 3])
def test_the_shares_of_every_global_batch_are_disjoint_and_make_it_whole(world):
    data, size = _data(23), 8

    def ids(share):
        return [b["id"] for b in data.batches(size, torch.Generator().manual_seed(5), share)]

    whole = ids(None)
    shares = [ids((rank, world)) for rank in range(world)]
    kept = [batch for batch in whole if len(batch) >= world]  # a last batch smaller than the processes is left out
    assert all(len(s) == len(kept) for s in shares)
    for step, batch in enumerate(kept):
        parts = [s[step] for s in shares]
        assert sorted(sum(parts, [])) == sorted(batch) and sum(len(p) for p in parts) == len(batch)
    assert data.batch_count(size, (0, world)) == len(kept) and data.batch_count(size) == len(whole)


def test_scaled_losses_of_the_shares_average_to_the_gradient_of_the_global_batch():
    """Missing labels spread unevenly over the shares: the scales make DDP's average the global gradient."""
    torch.manual_seed(0)
    tasks = [RegressionTask("size"), ClassificationTask("kind", classes=["a", "b", "c"])]
    for task in tasks:
        task.fit(np.zeros(4) if task.name == "size" else np.array([0.0, 1.0, 2.0]))
    head = torch.nn.Linear(5, 4)
    x, n = torch.randn(12, 5), 12
    targets = {"size": torch.randn(n), "kind": torch.randint(0, 3, (n,))}
    masks = {"size": torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.bool),
             "kind": torch.tensor([1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool)}
    composer = LossComposer(tasks, "static")

    def grad(rows, scales=None):
        head.zero_grad()
        out = head(x[rows])
        outputs = {"size": out[:, :1], "kind": out[:, 1:]}
        composer(outputs, {k: v[rows] for k, v in targets.items()}, {k: v[rows] for k, v in masks.items()},
                 scales=scales).total.backward()
        return head.weight.grad.clone()

    world, everything = 2, torch.arange(n)
    average = torch.zeros_like(head.weight)
    for rank in range(world):
        rows = everything[rank::world]
        scales = {t: world * float(masks[t][rows].sum()) / float(masks[t].sum()) for t in masks}
        average += grad(rows, scales) / world
    torch.testing.assert_close(average, grad(everything), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(average, sum(grad(everything[r::world]) for r in range(world)) / world)  # unscaled


def test_one_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with session() as parallel:
        assert parallel == current_parallel() == Parallel()
        assert not parallel.active and parallel.main and parallel.share is None
        assert parallel.loss_scales({"a": torch.ones(3, dtype=torch.bool)}) is None
        assert parallel.sum_floats([1.0, 2.0]) == [1.0, 2.0] and parallel.from_main({"x": 1}) == {"x": 1}
        assert parallel.wrap(torch.nn.Linear(2, 2), torch.device("cpu")) is None
    assert Parallel(rank=1, world=3).shard(list(range(7))) == [1, 4]


@pytest.mark.parametrize("text, expected", [("", DEFAULT_TIMEOUT_S), ("2.5", 2.5), (" 900 ", 900.0)])
def test_the_timeout_comes_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv(TIMEOUT_ENV, text)
    assert timeout_from_env() == expected


@pytest.mark.parametrize("text", ["soon", "0", "-3", "inf", "nan"])
def test_a_bad_timeout_is_one_line(monkeypatch, text):
    monkeypatch.setenv(TIMEOUT_ENV, text)
    with pytest.raises(ConfigError, match=f"{TIMEOUT_ENV}=.*positive number") as caught:
        timeout_from_env()
    assert "\n" not in str(caught.value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_peer_that_never_comes_is_one_line_after_the_timeout(monkeypatch):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), TIMEOUT_ENV: "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(RunError, match=r"rank 0 of 2: joining the process group: .* within 2 s \(MTL_DIST_TIMEOUT\)"
                       ) as caught:
        with session("cpu"):
            pass
    assert time.monotonic() - start < 30 and "\n" not in str(caught.value)
    assert not torch.distributed.is_initialized() and current_parallel() == Parallel()


def test_communication_failures_are_told_from_bugs():
    assert is_comm_failure(RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer"))
    assert not is_comm_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
