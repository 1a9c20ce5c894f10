"""Files of a run folder: JSON, CSV, Markdown and safetensors only, each written atomically.

CSV files are written for spreadsheets as much as for pandas: RFC 4180 quoting (a field holding a comma, a double
quote, CR or LF is quoted, double quotes doubled; rows end in LF, which every reader accepts), and a text cell that
a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading ``'``, the
OWASP rule against CSV injection; numbers such as ``-1.5`` stay numbers. See :func:`csv_cell`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable
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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?((\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def csv_cell(value: Any) -> str:
    """The text of one CSV cell, safe to open in a spreadsheet, before RFC 4180 quoting.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's rule
    against CSV injection: a spreadsheet shows the text instead of running it as a formula); a number written
    as text (``-1.5``, ``+3e2``, ``-inf``) stays as it is. None is the empty cell.

    Example:
        >>> [csv_cell(v) for v in ("=1+1", -1.5, "-1.5", "@SUM(A1)", "ward 7", None)]
        ["'=1+1", '-1.5', '-1.5', "'@SUM(A1)", 'ward 7', '']
    """
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_line(cells: Iterable[Any]) -> str:
    """One CSV row of ``cells`` (without its line end): each :func:`csv_cell`, quoted per RFC 4180 when it holds
    a comma, a double quote, CR or LF (double quotes doubled).

    Example:
        >>> print(csv_line(["a,b", "say 'hi'", "=1+1", -2, None]))
        "a,b",say 'hi','=1+1,-2,
    """
    texts = [csv_cell(c) for c in cells]
    if texts == [""]:
        return '""'  # a lone empty field, not an empty line (which readers skip)
    return ",".join(f'"{t.replace(chr(34), chr(34) * 2)}"' if _NEEDS_QUOTES.search(t) else t for t in texts)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text without the index: pandas' number formatting, :func:`csv_line` rows ending in LF.

    pandas writes the cells (quoting all, so they read back exactly), then each row is re-quoted by
    :func:`csv_line`: the csv module of Python < 3.12 leaves a lone CR unquoted, which splits the row.
    """
    text = frame.to_csv(index=False, quoting=csv.QUOTE_ALL, lineterminator="\n")
    return "".join(csv_line(row) + "\n" for row in csv.reader(io.StringIO(text, newline="")))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Atomically write ``frame`` as CSV without the index (RFC 4180 quoting, formula cells neutralised: see
    :func:`csv_text`)."""
    atomic_write(path, csv_text(frame))


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


def contained(path: Path | str, root: Path | str) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies inside the folder ``root`` (resolved too): the one
    rule for files a table or a run folder names (``../..``, an absolute path or a link out of ``root`` fail). A
    path that cannot be resolved (an embedded NUL, a loop of links) is not inside.

    Example:
        >>> contained("/data/images/../../etc/passwd", "/data")
        False
    """
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, ValueError, RuntimeError):
        return False


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
