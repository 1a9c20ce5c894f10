"""Run the real ``mtl`` command with one fault injected at an exact point: ``python -m tests.reliability._harness
FAULT ARGS...`` behaves as ``mtl ARGS...`` until the fault strikes.

Faults (counts are 1-based and per process, so a test knows exactly where a run stopped):

* ``kill-extract:N``   SIGKILL at the N-th batch of feature extraction.
* ``kill-batch:P:B``   SIGKILL in the P-th training epoch of this process, after B training batches.
* ``kill-save:N``      SIGKILL during the N-th checkpoint write: its temporary file half written, not renamed.
* ``ctrl-c:P:B``       SIGINT (what Ctrl-C sends) at the same place as ``kill-batch``.
* ``disk-full:NAME``   every write to a file named NAME (its temporary twin included) fails with ENOSPC.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path


def _strike(kind: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGINT)


def _count_extraction(limit: int) -> None:
    from mtl_core.features import BackboneFusion

    forward, calls = BackboneFusion.forward, [0]

    def counted(self, images):
        calls[0] += 1
        if calls[0] == limit:
            _strike("kill")
        return forward(self, images)

    BackboneFusion.forward = counted


def _count_batches(kind: str, epoch: int, after: int) -> None:
    from mtl_core.data import TensorData

    batches, passes = TensorData.batches, [0]

    def counted(self, batch_size, generator=None, share=None):
        training = generator is not None  # only training passes shuffle
        passes[0] += training
        for index, batch in enumerate(batches(self, batch_size, generator, share)):
            if training and passes[0] == epoch and index == after:
                _strike(kind)
            yield batch

    TensorData.batches = counted


def _count_saves(limit: int) -> None:
    replace, saves = os.replace, [0]

    def counted(src, dst, *args, **kwargs):
        if Path(dst).parent.name == "checkpoints" and str(dst).endswith(".safetensors"):
            saves[0] += 1
            if saves[0] == limit:
                os.truncate(src, os.path.getsize(src) // 2)  # a torn temporary file
                _strike("kill")
        return replace(src, dst, *args, **kwargs)

    os.replace = counted


def _fill_disk(name: str) -> None:
    """Writes through Python file objects to ``name`` (or ``.name.*.tmp``) fail as on a full disk."""
    fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, attr):
            return getattr(self._fh, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def patched(fd, *args, **kwargs):
        fh = fdopen(fd, *args, **kwargs)
        target = Path(os.readlink(f"/proc/self/fd/{fh.fileno()}")).name
        return Full(fh) if target == name or target.startswith(f".{name}.") else fh

    os.fdopen = patched


def install(fault: str) -> None:
    """Arm ``fault`` (see the module docstring)."""
    kind, _, rest = fault.partition(":")
    numbers = [int(x) for x in rest.split(":")] if kind != "disk-full" else []
    if kind == "kill-extract":
        _count_extraction(numbers[0])
    elif kind in ("kill-batch", "ctrl-c"):
        if kind == "ctrl-c":  # a shell starts background jobs with SIGINT ignored: Ctrl-C in a terminal is not
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _count_batches("kill" if kind == "kill-batch" else "int", *numbers)
    elif kind == "kill-save":
        _count_saves(numbers[0])
    elif kind == "disk-full":
        _fill_disk(rest)
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from mtl_core.cli import main

    sys.exit(main(sys.argv[2:]))
