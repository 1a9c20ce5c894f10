"""Distributed data parallel under ``torchrun``: the process group, each process's share of the data, collectives.

``torchrun --nproc_per_node N -m mtl_core.cli run DIR`` starts N copies of ``mtl run``; torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`session` joins them into one process
group (``nccl`` on GPUs, ``gloo`` on CPUs) with a timeout (:data:`TIMEOUT_ENV`). Without ``WORLD_SIZE`` > 1 nothing
here does anything: :func:`current_parallel` is a single process and every method is a no-op.

Fine-tuning follows Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training" (VLDB
2020): every process holds the whole model (:class:`~torch.nn.parallel.DistributedDataParallel`), takes a disjoint
share of every global batch and the gradients are averaged. Each task's loss is a mean over the labelled cases of
a batch, so a process's loss is rescaled by its share of the batch's labels (:meth:`Parallel.loss_scales`): the
averaged gradient is then the gradient of the global batch, whatever the missing labels (docs/distributed.md).

Example:
    >>> current_parallel().world, current_parallel().main
    (1, True)
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError, RunError

log = logging.getLogger(__name__)

#: seconds a collective (a gradient average, a barrier) waits for the other processes before failing
TIMEOUT_ENV = "MTL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
#: how long a process waits for another's longer work (a larger extraction shard, rank 0's training and report);
#: a process that dies is noticed at once all the same (its connections close)
WAIT_TIMEOUT = datetime.timedelta(hours=24)
#: words of the errors torch raises when another process died or did not answer
_COMM_FAILURES = ("connection closed", "connection reset", "timed out", "timeout", "gloo", "nccl", "broken pipe",
                  "socket", "peer")


@dataclass(frozen=True)
class Parallel:
    """This process's place in a distributed run; a single process (``world`` 1) makes every method a no-op.

    Attributes:
        rank: this process's number, 0 to ``world`` - 1 (rank 0 writes the run folder).
        world: the number of processes.
        local_rank: its number on this machine (its GPU).
        timeout_s: how long a collective waits for the others.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, the run folder and the console output."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This process's share of ``items``: every ``world``-th one from its rank (the shares are disjoint)."""
        return items[self.rank::self.world]

    @property
    def share(self) -> tuple[int, int] | None:
        """(rank, world) for :meth:`~mtl_core.data.records.TensorData.batches`; None for a single process."""
        return (self.rank, self.world) if self.active else None

    def barrier(self) -> None:
        """Wait for every process (at most the timeout)."""
        if self.active:
            dist.barrier()

    def wait(self) -> None:
        """Wait for every process's longer work (an extraction shard, rank 0's training): :data:`WAIT_TIMEOUT`."""
        if self.active:
            dist.barrier(group=_WAIT_GROUP)

    def sum_floats(self, values: list[float]) -> list[float]:
        """The sums over the processes of ``values`` (the same length on every process)."""
        if not self.active or not values:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=_device())
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def from_main(self, value):
        """Rank 0's ``value`` (any picklable object) on every process: one decision for all."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=_device())
        return box[0]

    def loss_scales(self, masks: Mapping[str, torch.Tensor]) -> dict[str, float] | None:
        """Per task, ``world * labelled here / labelled in the global batch`` (0 where none is): multiplied into the
        task's mean loss, the average of the processes' gradients is the global batch's gradient."""
        if not self.active:
            return None
        names = list(masks)
        here = [float(masks[n].sum()) for n in names]
        total = self.sum_floats(here)
        return {n: self.world * h / t if t else 0.0 for n, h, t in zip(names, here, total, strict=True)}

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Average the gradients of parameters outside the DDP-wrapped model (a learned loss weighting)."""
        if not self.active:
            return
        for param in parameters:
            if param.requires_grad:
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                dist.all_reduce(grad)
                param.grad = grad.div_(self.world)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module | None:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`; None for a single process.

        On CUDA, batch normalisation becomes :class:`~torch.nn.SyncBatchNorm` (statistics of the global batch, in
        place: ``model`` keeps its parameter names); torch has no CPU version, so on the CPU each process normalises
        with its share's statistics. ``find_unused_parameters``: the head of a task without labels in a process's
        share has no gradient there.
        """
        if not self.active:
            return None
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
            for name, child in list(model.named_children()):
                setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


_CURRENT = Parallel()
_WAIT_GROUP = None


def current_parallel() -> Parallel:
    """This process's place in the distributed run that :func:`session` joined; a single process otherwise."""
    return _CURRENT


def _device() -> torch.device:
    """Where the default group's tensors live: this process's GPU with nccl, the CPU with gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def timeout_from_env() -> float:
    """The collectives' timeout in seconds: :data:`TIMEOUT_ENV`, else :data:`DEFAULT_TIMEOUT_S`.

    Raises:
        ConfigError: the variable is not a positive number.
    """
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV}={text[:40]!r} is not a number of seconds; set it to a positive number "
                          f"such as 600 (the default), or unset it")
    return value


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise ConfigError(f"{name}={text[:40]!r} is not an integer; start distributed runs with torchrun, which "
                          "sets it") from None


def backend_for(device: str) -> str:
    """``nccl`` where the run uses CUDA, else ``gloo``."""
    wants_cuda = device == "auto" or device.startswith("cuda")
    return "nccl" if wants_cuda and torch.cuda.is_available() else "gloo"


def is_comm_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch saying that another process died or did not answer in time."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc).lower() for word in _COMM_FAILURES)


def _failure(parallel: Parallel, exc: BaseException, when: str) -> RunError:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return RunError(f"rank {parallel.rank} of {parallel.world}: {when}: another process stopped or did not answer "
                    f"within {parallel.timeout_s:g} s ({TIMEOUT_ENV}) ({first[:160]}); see the other processes' "
                    "messages; nothing was finished")


def _join(device: str) -> Parallel:
    """Join torchrun's process group (``WORLD_SIZE`` > 1) and make the waiting group."""
    global _CURRENT, _WAIT_GROUP
    world = _env_int("WORLD_SIZE", 1)
    parallel = Parallel(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), timeout_from_env())
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(parallel.local_rank)  # "cuda" then means this process's GPU
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=parallel.timeout_s))
        _WAIT_GROUP = dist.new_group(backend="gloo", timeout=max(WAIT_TIMEOUT, datetime.timedelta(
            seconds=parallel.timeout_s)))
    except (RuntimeError, ValueError) as exc:
        raise _failure(parallel, exc, "joining the process group") from None
    log.info("distributed run: rank %d of %d, backend %s", parallel.rank, world, backend)
    _CURRENT = parallel
    return parallel


@contextmanager
def session(device: str = "auto") -> Iterator[Parallel]:
    """Join torchrun's processes for the duration of a run (nothing to join without ``WORLD_SIZE`` > 1).

    Args:
        device: the run's ``train.device``: the backend is ``nccl`` where it means CUDA, else ``gloo``.

    Raises:
        RunError: another process died, or a collective waited longer than :data:`TIMEOUT_ENV` seconds.
        ConfigError: a torchrun variable or :data:`TIMEOUT_ENV` is not valid.
    """
    global _CURRENT
    if _env_int("WORLD_SIZE", 1) <= 1 or dist.is_initialized():
        yield _CURRENT
        return
    parallel = _join(device)
    try:
        yield parallel
    except RuntimeError as exc:
        if is_comm_failure(exc):
            raise _failure(parallel, exc, "a collective failed") from None
        raise
    finally:
        _CURRENT = Parallel()
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError):  # a group broken by a dead process: nothing left to close
            pass


__all__ = ["DEFAULT_TIMEOUT_S", "Parallel", "TIMEOUT_ENV", "backend_for", "current_parallel", "is_comm_failure",
           "session", "timeout_from_env"]
