"""Frozen-backbone feature extraction and its content-addressed cache.

The cache key of an entry covers the image bytes (SHA-256 of each file), the preprocessing, the backbones with
their pooling and weights' identity, and the library versions, so any change misses the cache and nothing stale
is reused. Entries are grouped into 16 bucket files by image digest; a lookup is per image, so adding or changing
one image extracts only that image. Each bucket file carries a checksum of its tensor, checked on read.

Features are stored and returned in the fusion's ``feature_dtype``: float32, or float16 for feature maps
(pooling ``map``), which are converted once per batch and clamped to float16's range (docs/memory.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..accel import Compiled, out_of_memory, precision_context, resolve_precision, use_channels_last
from ..data import ImageDataset, ImageReader, reader_identity
from ..errors import MTLError
from ..io import atomic_write, checksum, drop_entry, file_digest, read_checked, safetensors_header, tensor_bytes
from .backbones import BackboneFusion
from .memo import library_versions

if TYPE_CHECKING:
    from .fusion import LazyFusion

log = logging.getLogger(__name__)
BUCKETS = "0123456789abcdef"


def extractor_key(fusion: BackboneFusion | LazyFusion, image_size: int, reader_id: str, precision: str = "fp32") -> str:
    """Digest of everything except the images that determines the features (``precision`` resolved)."""
    spec = {"backbones": fusion.describe(), "pooling": [fusion.pooling] * len(fusion.infos),
            "grid": [fusion.grid] * len(fusion.infos), "image_size": image_size, "reader": reader_id,
            "versions": library_versions()}
    if precision != "fp32":  # fp32 keys stay those of earlier versions
        spec["precision"] = precision
    if fusion.pooling == "map":  # avg and grid keys stay those of earlier versions
        spec["map"] = {"size": fusion.map_size, "levels": fusion.map_levels, "dtype": str(fusion.feature_dtype)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def to_storage(features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch of features (B, F) as ``dtype`` on the CPU, converted once. float16 holds magnitudes up to 65504:
    larger values (an untrained or diverged backbone; trained ones stay far below) are clamped, with a warning,
    rather than stored as infinities."""
    if dtype == torch.float16 and features.dtype != torch.float16:
        limit = torch.finfo(torch.float16).max
        peak = float(features.abs().amax()) if features.numel() else 0.0
        if peak > limit:
            log.warning("feature values up to %.3g exceed float16's range: clamped to +-%g", peak, limit)
            features = features.clamp(-limit, limit)
    return features.to("cpu", dtype)


_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fusion -> (compile asked, its forward)


def _forward(fusion: BackboneFusion, compile: bool) -> Compiled:
    """The fusion's forward, built once per fusion and setting: a chunked extraction calls
    :func:`extract_features` several times, and compiling (or warning that it failed) must happen once."""
    asked, forward = _FORWARDS.get(fusion, (None, None))
    if asked is not compile:
        forward = Compiled(fusion, compile)
        _FORWARDS[fusion] = (compile, forward)
    return forward


def extract_features(fusion: BackboneFusion, paths: list[Path], reader: ImageReader, image_size: int, *,
                     batch_size: int = 16, workers: int = 0, device: torch.device | str = "cpu",
                     progress: Callable | None = None, out: torch.Tensor | None = None,
                     rows: torch.Tensor | None = None, precision: str = "auto", channels_last: bool | str = "auto",
                     compile: bool = False, input_cache=None, digests: list[str] | None = None) -> torch.Tensor:
    """Run the fused backbones over images. Returns (N, fusion.num_features) in ``fusion.feature_dtype`` (float32,
    float16 for maps) on the CPU.

    Args:
        out, rows: write the features of ``paths[i]`` into ``out[rows[i]]`` (and return ``out``) instead of
            allocating a new matrix: a large data set then holds its feature matrix once.
        precision, channels_last, compile: see :mod:`mtl_core.accel` (``auto``: bf16 autocast and channels_last
            on CUDA, fp32 on the CPU).
        input_cache, digests: a :class:`~mtl_core.data.input_cache.InputCache` of decoded, resized images, and the
            files' SHA-256 when known (see :class:`~mtl_core.data.records.ImageDataset`).

    Raises:
        RunError: the device ran out of memory (the message says which batch size to try).
    """
    device = torch.device(device)
    fusion.to(device).eval()
    if use_channels_last(channels_last, device):
        fusion.to(memory_format=torch.channels_last)
    forward = _forward(fusion, compile)
    loader = torch.utils.data.DataLoader(ImageDataset(paths, reader, image_size, input_cache, digests),
                                         batch_size=batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    if out is None:
        out = torch.empty(len(paths), fusion.num_features, dtype=fusion.feature_dtype)
    rows = torch.arange(len(paths)) if rows is None else torch.as_tensor(rows)
    bar = progress(total=len(paths), desc="extract", unit="img") if progress else None
    with torch.inference_mode():
        try:
            for index, images in loader:
                try:
                    with precision_context(precision, device):
                        fused = forward(images.to(device, non_blocking=True))
                except torch.cuda.OutOfMemoryError:
                    raise out_of_memory("extracting features", "data.batch_size", batch_size, device) from None
                out[rows[index]] = to_storage(fused, out.dtype)
                if bar:
                    bar.update(len(index))
        except MTLError as exc:  # a worker's error arrives wrapped in its traceback text: keep the message
            lines = [line for line in str(exc).splitlines() if line.strip()]
            message = lines[-1].split(": ", 1)[-1] if workers and len(lines) > 1 else str(exc)
            raise type(exc)(message) from None
        finally:
            if bar:
                bar.close()
    return out


class _Continued:
    """One progress bar across several extraction passes: their ``close`` leaves it open."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        pass


class FeatureCache:
    """Content-addressed store of fused features under ``root``.

    Example:
        >>> cache = FeatureCache(tmp_dir)  # doctest: +SKIP
        >>> feats = cache.features(fusion, paths, reader, image_size=224)  # doctest: +SKIP
    """

    first_chunk = 1024  # images extracted before the first store; each later chunk is twice the one before

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.hits = 0  # images served from the cache
        self.misses = 0  # images extracted

    def _load(self, path: Path) -> tuple[list[str], torch.Tensor | None]:
        """Digests and features of one bucket file; nothing when absent or corrupt (a corrupt file is dropped)."""
        found = read_checked(path, "features", "feature cache", "recomputing")
        if found is None:
            return [], None
        tensor, meta = found
        try:
            digests = json.loads(meta.get("digests", "[]"))
        except ValueError as exc:
            digests = exc
        if not isinstance(digests, list) or len(digests) != len(tensor):
            drop_entry(path, "feature cache", "recomputing", "its digests do not match its rows")
            return [], None
        return digests, tensor

    @staticmethod
    def _store(folder: Path, bucket: str, fresh: dict[str, torch.Tensor]) -> None:
        """Write ``fresh`` (digest -> row) as a new file of ``bucket``, streamed from the rows without stacking
        them; earlier files are never rewritten (a bucket gains one file per extraction chunk)."""
        digests = list(fresh)
        rows = [tensor_bytes(fresh[d]) for d in digests]
        first = fresh[digests[0]]
        shape = torch.empty(len(rows), first.numel(), dtype=first.dtype, device="meta")  # the header needs no data
        header = safetensors_header({"features": shape}, {"digests": json.dumps(digests), "checksum": checksum(rows)})
        atomic_write(folder / f"{bucket}.{secrets.token_hex(6)}.safetensors", [header, *rows])

    def features(self, fusion: BackboneFusion | LazyFusion, paths: list[Path], reader: ImageReader, image_size: int, *,
                 reader_id: str | None = None, **extract_options) -> torch.Tensor:
        """Features (N, F) in ``fusion.feature_dtype`` for ``paths``, from the cache where possible; misses are
        extracted and stored.

        The matrix is allocated once and filled in place, bucket by bucket, so memory holds it once plus one
        bucket. Misses are extracted in chunks that double in size (``first_chunk`` images, then twice that, ...),
        each stored as it ends: an interrupted extraction keeps at least half of what it had done, for about twice
        the writes of a single store at the end.

        Args:
            reader_id: identity of ``reader`` in the cache key; its qualified name when not given.
        """
        reader_id = reader_id or reader_identity(reader)
        digests = [file_digest(Path(p)) for p in paths]
        precision = resolve_precision(extract_options.get("precision", "auto"),
                                      extract_options.get("device", "cpu"))
        folder = self.root / extractor_key(fusion, image_size, reader_id, precision)[:32]
        rows: dict[str, list[int]] = {}  # digest -> rows of the matrix (the same image may be listed twice)
        for row, digest in enumerate(digests):
            rows.setdefault(digest, []).append(row)
        out = torch.empty(len(paths), fusion.num_features, dtype=fusion.feature_dtype)
        todo = set(rows)
        for bucket in sorted({d[0] for d in rows}):
            for path in sorted(folder.glob(f"{bucket}.*safetensors")):  # one file at a time: little memory
                stored, tensor = self._load(path)
                for i, digest in enumerate(stored):
                    if digest in todo:
                        out[rows[digest]] = tensor[i]
                        todo.discard(digest)
                del tensor
        missing = [d for d in rows if d in todo]  # in the order of paths
        self.hits, self.misses = self.hits + len(rows) - len(missing), self.misses + len(missing)
        progress = extract_options.pop("progress", None)
        bar = progress(total=len(missing), desc="extract", unit="img") if progress and missing else None
        chunk, start = self.first_chunk, 0
        try:
            while start < len(missing):
                part = missing[start:start + chunk]
                first = [rows[d][0] for d in part]
                extract_features(fusion.built(), [paths[r] for r in first], reader, image_size, out=out,
                                 rows=torch.tensor(first), progress=bar and (lambda **_: _Continued(bar)),
                                 digests=part, **extract_options)
                for bucket in sorted({d[0] for d in part}):
                    self._store(folder, bucket, {d: out[rows[d][0]] for d in part if d[0] == bucket})
                start, chunk = start + chunk, chunk * 2
        finally:
            if bar:
                bar.close()
        for digest in missing:
            for row in rows[digest][1:]:  # the same image listed again
                out[row] = out[rows[digest][0]]
        return out


__all__ = ["FeatureCache", "extract_features", "extractor_key", "library_versions", "to_storage"]
