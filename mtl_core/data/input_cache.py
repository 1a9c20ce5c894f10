"""A persistent cache of preprocessed inputs: each image decoded and resized once, then read back as a tensor.

Decoding a large 16-bit PNG and resizing it costs far more than reading the resized tensor back (see
docs/performance.md), so repeated runs that need the images again (other backbones, ``mtl compare``, fine-tuning,
a changed feature setting) skip the decoder. Entries are keyed by the SHA-256 of the image file, the reader and
the size, so an edited image or another reader never reuses a stale entry; each is one safetensors file
(float32, exactly what a fresh decode gives) with a checksum, written atomically, safe to share between
DataLoader workers. A corrupt entry is dropped and recomputed.

Example:
    >>> cache = InputCache(tmp_dir)  # doctest: +SKIP
    >>> image = cache.image(path, reader, 224)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from ..io import atomic_write, checksum, file_digest, read_checked, safetensors_chunks, tensor_bytes
from .records import ImageReader, load_image_tensor, reader_identity

log = logging.getLogger(__name__)


class InputCache:
    """Resized images under ``root``, one file per (image contents, reader, size)."""

    def __init__(self, root: Path | str, reader_id: str | None = None) -> None:
        self.root, self.reader_id = Path(root), reader_id

    def _path(self, digest: str, reader: ImageReader, size: int) -> Path:
        key = hashlib.sha256(f"{digest}|{self.reader_id or reader_identity(reader)}|{size}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}.safetensors"

    def image(self, path: Path, reader: ImageReader, size: int, digest: str | None = None) -> torch.Tensor:
        """The image at ``path`` as (C, size, size) in [0, 1], from the cache or decoded (and then stored)."""
        entry = self._path(digest or file_digest(Path(path)), reader, size)
        cached = self._load(entry)
        if cached is not None:
            return cached
        image = load_image_tensor(path, reader, size).contiguous()
        stored = {"checksum": checksum([tensor_bytes(image)])}
        atomic_write(entry, safetensors_chunks({"image": image}, stored), durable=False)
        return image

    @staticmethod
    def _load(entry: Path) -> torch.Tensor | None:
        found = read_checked(entry, "image", "input cache", "decoding the image again")
        return None if found is None else found[0]


__all__ = ["InputCache"]
