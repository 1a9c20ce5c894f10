"""Files of a run folder: JSON, CSV, Markdown and safetensors only, each written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import RunError

log = logging.getLogger(__name__)

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: temporary files are created private (0600), results get the usual permissions


def atomic_write(path: Path, data: bytes | str | list, *, durable: bool = True) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it into place.

    A process killed at any moment leaves either the old file or the new one; an interrupted write removes its
    temporary file. A failure (permissions, a full disk, a file where a folder should be) is a :class:`RunError`.

    Args:
        data: Text, bytes, or a list of bytes-like chunks (memoryviews of tensors, say) written one after the
            other without joining them first.
        durable: ``False`` skips the ``fsync``: the file still survives a killed process (the rename is atomic
            and the data sits in the page cache); only an OS crash or power loss may lose it.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            for chunk in data if isinstance(data, list) else [data]:
                fh.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_error(path: Path, exc: OSError) -> RunError:
    """The one-line error for a file that cannot be written (permissions, a full disk, a file for a folder)."""
    return RunError(f"cannot write {path}: {exc.strerror or exc}; check that the folder is writable and the disk "
                    f"has free space")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN becomes null)."""
    atomic_write(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Atomically write a CSV without the index."""
    atomic_write(path, frame.to_csv(index=False))


_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


def file_digest(path: Path) -> str:
    """SHA-256 of a file's contents (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """``$MTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtl``, else ``~/.cache/mtl``."""
    if os.environ.get("MTL_CACHE_DIR"):
        return Path(os.environ["MTL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mtl"


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def safetensors_header(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The start of a safetensors file holding ``tensors`` in their order: its length, then its JSON header."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text


def safetensors_chunks(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> list:
    """A safetensors file as chunks: its header, then each tensor's bytes uncopied (contiguous CPU tensors that
    share no memory). Much cheaper than building the whole file in memory."""
    return [safetensors_header(tensors, metadata), *(tensor_bytes(t) for t in tensors.values())]


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically save tensors as safetensors."""
    atomic_write(path, safetensors_chunks({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (a pickle, say) is refused without being unpickled."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise RunError(f"{path} is missing; is this a finished run folder?")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - not safetensors: refuse, never unpickle
        raise RunError(f"{path} is not a valid safetensors file ({type(exc).__name__}); refusing to load it") from None


def checksum(views: list) -> str:
    """SHA-256 (hex) of the bytes of ``views`` in order: what a cache entry stores of its tensor's contents."""
    digest = hashlib.sha256()
    for view in views:
        digest.update(view)
    return digest.hexdigest()


def read_checked(path: Path, name: str, what: str, then: str) -> tuple[torch.Tensor, dict[str, str]] | None:
    """Tensor ``name`` of the safetensors cache entry ``path`` and its metadata, when the ``checksum`` it stores
    matches the contents; None when the entry is absent. A damaged entry is deleted with a warning (``what`` names
    the cache, ``then`` says what happens instead) and None returned, so a cache can only be slower, never wrong."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensor = fh.get_tensor(name)
        if meta.get("checksum") != checksum([tensor_bytes(tensor)]):
            raise ValueError("checksum does not match the contents")
        return tensor, meta
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
        drop_entry(path, what, then, exc)
        return None


def drop_entry(path: Path, what: str, then: str, reason: object) -> None:
    """Delete a damaged cache entry, saying so."""
    log.warning("dropping corrupt %s entry %s (%s); %s", what, path, reason, then)
    path.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    """Read a JSON file of a run folder with a clear error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing; is {path.parent} a finished run folder?") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable or not JSON: {exc}") from None
