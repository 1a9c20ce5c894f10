"""Checkpoints: what an interrupted run needs to continue bit for bit, stored without pickle.

A training checkpoint is one safetensors file: the tensors (model, optimiser, loss weighting, best weights so far,
RNG states) as tensors, and everything else (epoch, early-stopping state, history, Python and NumPy RNG states) as
JSON in the file's metadata, with a checksum over both. It is written to a temporary file and renamed into place,
so a kill at any moment leaves either the previous checkpoint or the new one, never a torn file. Loading one runs
no code.

A run folder keeps its checkpoints in ``checkpoints/``: one file per training (named by a key the pipeline
chooses, e.g. a fold) and ``run.json``, a fingerprint of the resolved configuration and the data, so that
``mtl run ... --resume`` refuses to continue a run made with another configuration.

Example:
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "main.safetensors"
    >>> save_checkpoint(path, {"epoch": 3, "weights": {"w": torch.ones(2)}})
    >>> load_checkpoint(path)["epoch"]
    3
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Split
from ..errors import RunError
from ..io import read_json, refuse_link, safetensors_chunks, safetensors_header, tensor_bytes, write_error, write_json

log = logging.getLogger(__name__)
FORMAT = "mtl-checkpoint/2"  # 2: the checksum hashes 4 MiB pieces
_PIECE = 1 << 22
RUN_FORMAT = "mtl-resume/1"
FOLDER = "checkpoints"
RUN_FILE = "run.json"
FINISHED_MARK = "metrics.json"  # written last by a run: its presence marks a finished run
#: the names a run writes in ``checkpoints/``: run.json, a training's checkpoint (key: final or repeatN-foldM, with
#: -only-TASKS for a single-task baseline) and its best-weights side file, their copies left aside (.NAME.old) and
#: temporary files (.NAME.*.tmp); only these are ever deleted there
OWN_FILE = re.compile(r"\.?(run\.json|(final|repeat\d+-fold\d+)(-only-.+)?(\.best)?\.safetensors)"
                      r"(\.old|\..+\.tmp)?")


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``value``; tensors go to ``tensors`` and are referenced by key. Dict keys keep their type."""
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous()
        return {"t": key}
    if isinstance(value, np.ndarray):
        return {"a": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, Mapping):
        return {"d": [[k, _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"l" if isinstance(value, list) else "u": [_encode(v, tensors) for v in value]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _decode(node: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict):
        return node
    if "t" in node:
        return tensors[node["t"]]
    if "a" in node:
        return np.asarray(node["a"], dtype=node["dtype"])
    if "d" in node:
        return {k: _decode(v, tensors) for k, v in node["d"]}
    items = [_decode(v, tensors) for v in node.get("l", node.get("u", []))]
    return items if "l" in node else tuple(items)


def _checksum(text: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the JSON text and, per tensor in key order, its key and the SHA-256 of each 4 MiB piece of
    its bytes. Two threads hash the pieces at once (hashlib releases the GIL): on a 2-core CPU a 60 MB checkpoint
    takes ~20 ms instead of ~40 ms, which is most of its save time."""
    keys = sorted(tensors)
    views = {key: tensor_bytes(tensors[key]) for key in keys}
    pieces = [(key, start) for key in keys for start in range(0, len(views[key]), _PIECE)]
    with ThreadPoolExecutor(2) as pool:
        digests = dict(zip(pieces, pool.map(lambda p: hashlib.sha256(views[p[0]][p[1]:p[1] + _PIECE]).digest(),
                                            pieces), strict=True))
    total = hashlib.sha256(text.encode())
    for key in keys:
        total.update(key.encode())
        for start in range(0, len(views[key]), _PIECE):
            total.update(digests[key, start])
    return total.hexdigest()


def _unshare(tensors: dict[str, torch.Tensor]) -> None:
    """Copy the tensors that share memory with another one or view part of a larger one (safetensors refuses
    both); the others are written without a copy."""
    seen: set[int] = set()
    for key, tensor in tensors.items():
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensors[key] = tensor.clone()
        seen.add(tensors[key].untyped_storage().data_ptr())


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _write_reusing(path: Path, chunks: list, head: Callable[[], bytes]) -> None:
    """Write ``chunks`` as the new ``path``, atomically, into the file of the checkpoint before the previous one.

    Each save overwrites that file in place (its pages are already allocated: creating and deleting 60 MB files
    every epoch costs the kernel about as much as the copy), then ``head()`` overwrites the start of it. Renames:
    ``path`` -> ``.path.old`` and the new file -> ``path``; a kill between them leaves ``.path.old``, which
    :func:`checkpoint_file` falls back to. A kill while writing leaves ``path`` as it was.
    """
    slot, aside = path.with_name(f".{path.name}.next.tmp"), _aside(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if aside.exists() and path.exists():  # never reuse the only checkpoint left (a save killed mid-rename)
            os.replace(aside, slot)
        with open(slot, "r+b" if slot.exists() else "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.truncate()
            fh.seek(0)
            fh.write(head())
        if path.exists():
            os.replace(path, aside)
        os.replace(slot, path)
    except OSError as exc:
        raise write_error(path, exc) from None


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Atomically write ``state`` (nested dicts, lists, tuples, tensors, NumPy arrays and JSON scalars).

    Written after every epoch, so made cheap: no ``fsync`` (a killed or crashed process never loses the file; an
    OS crash or power cut may cost the epochs since the kernel last flushed), the checksum is computed in a thread
    while the tensors are written, into a file reused from an earlier save (see :func:`_write_reusing`).
    """
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(_encode(dict(state), tensors))
    _unshare(tensors)
    meta = {"format": FORMAT, "state": text, "checksum": "0" * 64}  # the same length as the real one
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(_checksum, text, tensors)
        _write_reusing(Path(path), safetensors_chunks(tensors, meta),
                       lambda: safetensors_header(tensors, meta | {"checksum": digest.result()}))


def best_file(path: Path) -> Path:
    """Side file of the checkpoint at ``path`` that holds a training's best weights so far."""
    return Path(path).with_name(Path(path).name.removesuffix(".safetensors") + ".best.safetensors")


def drop_side_files(path: Path) -> None:
    """Delete what a running training keeps beside its checkpoint at ``path``: the best-weights side file and the
    previous copies of both."""
    for leftover in (best_file(path), _aside(Path(path)), _aside(best_file(path))):
        leftover.unlink(missing_ok=True)


def checkpoint_file(path: Path) -> Path | None:
    """The checkpoint to continue from: ``path``, else the previous one that a save killed between its two
    renames left aside; None when there is none."""
    for candidate in (Path(path), _aside(Path(path))):
        if candidate.is_file():
            return candidate
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a torn, corrupt or foreign file is a :class:`RunError`."""
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + size]).get("__metadata__", {})
        if meta.get("format") == FORMAT and meta.get("checksum") == _checksum(meta.get("state", ""), tensors):
            return _decode(json.loads(meta["state"]), tensors)
        problem = "corrupt (checksum)" if meta.get("format") == FORMAT else f"of format {meta.get('format')!r}"
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is refused, never unpickled
        problem = f"unreadable or corrupt ({type(exc).__name__})"
    raise RunError(f"checkpoint {path} is {problem}, not a {FORMAT} checkpoint of this version; delete it to "
                   f"restart that training from its beginning")


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training draws from: Python, NumPy, torch (CPU and CUDA) and ``generator``."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": [version, list(mt), gauss], "numpy": [name, keys, pos, has_gauss, cached],
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back the random states saved by :func:`rng_state`."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def fingerprint(config: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """Digest of a resolved configuration and the identity of its data."""
    return hashlib.sha256(json.dumps({"config": config, "data": data}, sort_keys=True, default=str).encode()
                          ).hexdigest()


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    """The first dotted key where two JSON documents differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.') or '(top level)'}: {old!r} there, {new!r} now"


class RunCheckpoints:
    """The ``checkpoints/`` folder of a run folder: one checkpoint per training and the run's fingerprint.

    Args:
        output: The run folder.
        config: The resolved configuration as JSON (``output`` excluded: a copied run folder still resumes).
        data: The identity of the data (number of cases, digest of ids and targets).
        resume: Continue the trainings found there; otherwise stale checkpoints are removed.
        say: Where to tell the user what happens.

    Raises:
        RunError: ``resume`` and the folder was made with another configuration or data, or is already finished;
            or the folder cannot be written.
    """

    def __init__(self, output: Path, config: Mapping[str, Any], data: Mapping[str, Any], *, resume: bool = False,
                 say: Callable[[str], None] = print) -> None:
        self.output, self.folder = Path(output), Path(output) / FOLDER
        record = {"format": RUN_FORMAT, "fingerprint": fingerprint(config, data), "config": config, "data": data}
        refuse_link(self.folder)  # never write (or delete) through a link out of the run folder
        if resume:
            self._check_resumable(record, say)
        else:  # an earlier, unfinished run: starting over, deleting only what a run writes here
            self._drop(lambda name: True)
        self._drop(lambda name: name.endswith(".tmp"))  # a write killed before its rename
        write_json(self.folder / RUN_FILE, record)

    def _drop(self, which: Callable[[str], bool]) -> None:
        """Delete the files of this folder that a run writes (:data:`OWN_FILE`) and ``which`` selects; a file of
        any other name is not ours and stays."""
        for path in self.folder.glob("*") if self.folder.is_dir() else []:
            if OWN_FILE.fullmatch(path.name) and which(path.name) and not path.is_dir():
                path.unlink(missing_ok=True)

    def _check_resumable(self, record: dict[str, Any], say: Callable[[str], None]) -> None:
        resume_cmd = "choose another --output, or drop --resume to start over"
        if not (self.folder / RUN_FILE).is_file():
            if (self.output / FINISHED_MARK).is_file():
                raise RunError(f"{self.output} holds a finished run made without checkpoints; nothing to resume: "
                               f"{resume_cmd}")
            say(f"note: {self.output} has no checkpoint to resume; starting from the beginning")
            return
        old = read_json(self.folder / RUN_FILE)
        for part, label in (("config", "configuration"), ("data", "data")):
            if old.get(part) != record[part]:
                raise RunError(f"--resume: {self.output} was made with another {label} "
                               f"({_first_difference(old.get(part), record[part])}); resume with the same config, "
                               f"--set and --data, or {resume_cmd}")
        if old.get("fingerprint") != record["fingerprint"]:
            raise RunError(f"--resume: {self.folder / RUN_FILE} is not a checkpoint record of this version; "
                           f"{resume_cmd}")
        if (self.output / FINISHED_MARK).is_file() and not self.trainings():
            raise RunError(f"--resume: {self.output} is a finished run; nothing to resume: {resume_cmd}")
        done = self.trainings()
        say(f"resuming {self.output}: " + (f"checkpoints of {', '.join(done)}" if done else "no training started"))

    def trainings(self) -> list[str]:
        """Keys of the trainings that have a checkpoint."""
        names = [p.name for p in self.folder.glob("*.safetensors") if OWN_FILE.fullmatch(p.name)]
        names += [p.name[1:].removesuffix(".old") for p in self.folder.glob(".*.safetensors.old")
                  if OWN_FILE.fullmatch(p.name)]
        return sorted({name.removesuffix(".safetensors") for name in names if not name.endswith(".best.safetensors")})

    def path(self, key: str) -> Path:
        """Checkpoint file of the training ``key`` (e.g. ``"main"`` or ``"fold3"``)."""
        return self.folder / f"{key}.safetensors"

    def finish(self) -> None:
        """The run folder is complete: drop the training checkpoints (large), keep the fingerprint."""
        self._drop(lambda name: name != RUN_FILE)


def open_run_checkpoints(output: Path, config: Any, records: Any, *, resume: bool = False,
                         say: Callable[[str], None] = print) -> RunCheckpoints:
    """The checkpoints folder of a run with a :class:`~mtl_core.config.RunConfig` and its
    :class:`~mtl_core.data.records.Records`; see :class:`RunCheckpoints`."""
    resolved = {k: v for k, v in config.model_dump(mode="json").items() if k != "output"}
    return RunCheckpoints(output, resolved, data_identity(records.ids, records.targets), resume=resume, say=say)


def reading_checkpoints(output: Path) -> RunCheckpoints:
    """The checkpoints of the run folder ``output``, to read only: a process of a distributed run other than rank 0,
    which opened them (and alone writes them)."""
    found = RunCheckpoints.__new__(RunCheckpoints)
    found.output, found.folder = Path(output), Path(output) / FOLDER
    return found


def training_key(split: Split, tasks: list[Any], all_tasks: list[Any]) -> str:
    """Checkpoint name of one training of a run: its repeat and fold (or ``final``), and its tasks when a subset."""
    key = "final" if split.is_final else f"repeat{split.repeat}-fold{split.fold}"
    names = [t.name for t in tasks]
    return key if names == [t.name for t in all_tasks] else f"{key}-only-{'+'.join(names)}"


def data_identity(ids: list[str], targets: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What identifies the data of a run: its case ids and every target value (not its folder, which may move)."""
    digest = hashlib.sha256(json.dumps(list(ids)).encode())
    for name in sorted(targets):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(targets[name], dtype=np.float64).tobytes())
    return {"cases": len(ids), "digest": digest.hexdigest()}


__all__ = ["RunCheckpoints", "best_file", "checkpoint_file", "data_identity", "drop_side_files", "fingerprint",
           "load_checkpoint", "open_run_checkpoints",
           "reading_checkpoints", "restore_rng", "rng_state", "save_checkpoint", "training_key"]
