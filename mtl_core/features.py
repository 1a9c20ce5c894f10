"""Frozen-backbone feature extraction and its content-addressed cache.

The cache key of an entry covers the image bytes (SHA-256 of each file), the preprocessing, the backbones with
their pooling and weights' identity, and the library versions, so any change misses the cache and nothing stale
is reused. Entries are grouped into 16 buckets by image digest: adding or changing one image recomputes only its
bucket. Each entry is a safetensors file whose metadata carries a checksum of the tensor, checked on read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .backbones import BackboneFusion
from .data import ImageDataset, ImageReader
from .errors import MTLError
from .weights import file_digest

log = logging.getLogger(__name__)
BUCKETS = "0123456789abcdef"


def library_versions() -> dict[str, str]:
    """Versions that can change extracted features."""
    import timm
    import torchvision

    from . import __version__

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
            "mtl_core": __version__}


def extractor_key(fusion: BackboneFusion, image_size: int, reader_id: str) -> str:
    """Digest of everything except the images that determines the features."""
    spec = {"backbones": fusion.describe(), "pooling": [b.pooling for b in fusion.backbones],
            "grid": [b.grid for b in fusion.backbones], "image_size": image_size, "reader": reader_id,
            "versions": library_versions()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def extract_features(fusion: BackboneFusion, paths: list[Path], reader: ImageReader, image_size: int, *,
                     batch_size: int = 16, workers: int = 0, device: torch.device | str = "cpu",
                     progress: Callable | None = None) -> torch.Tensor:
    """Run the fused backbones over images. Returns (N, fusion.num_features) float32 on the CPU."""
    device = torch.device(device)
    fusion.to(device).eval()
    loader = torch.utils.data.DataLoader(ImageDataset(paths, reader, image_size), batch_size=batch_size,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    out = torch.empty(len(paths), fusion.num_features)
    bar = progress(total=len(paths), desc="extract", unit="img") if progress else None
    with torch.inference_mode():
        try:
            for index, images in loader:
                out[index] = fusion(images.to(device, non_blocking=True)).float().cpu()
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


def _tensor_checksum(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def _atomic_save(tensor: torch.Tensor, metadata: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"features": tensor.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class FeatureCache:
    """Content-addressed store of fused features under ``root``.

    Example:
        >>> cache = FeatureCache(tmp_dir)  # doctest: +SKIP
        >>> feats = cache.features(fusion, paths, reader, image_size=224)  # doctest: +SKIP
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.hits = 0  # images served from the cache
        self.misses = 0  # images extracted

    def _load(self, path: Path, digests: list[str]) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensor = fh.get_tensor("features")
            if json.loads(meta.get("digests", "[]")) != digests or meta.get("checksum") != _tensor_checksum(tensor):
                raise ValueError("checksum or contents do not match")
            return tensor
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("dropping corrupt feature cache entry %s (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return None

    def features(self, fusion: BackboneFusion, paths: list[Path], reader: ImageReader, image_size: int, *,
                 reader_id: str = "", **extract_options) -> torch.Tensor:
        """Features (N, F) for ``paths``, from the cache where possible; misses are extracted and stored."""
        digests = [file_digest(Path(p)) for p in paths]
        folder = self.root / extractor_key(fusion, image_size, reader_id)[:32]
        first_path = dict(zip(reversed(digests), reversed(list(paths)), strict=True))
        by_digest: dict[str, torch.Tensor] = {}
        missing: dict[Path, list[str]] = {}
        for bucket in BUCKETS:
            members = sorted(d for d in first_path if d[0] == bucket)
            if not members:
                continue
            content = hashlib.sha256("".join(members).encode()).hexdigest()[:32]
            entry = folder / f"{bucket}-{content}.safetensors"
            tensor = self._load(entry, members)
            if tensor is None:
                missing[entry] = members
            else:
                by_digest.update(zip(members, tensor, strict=True))
        self.hits, self.misses = self.hits + len(by_digest), self.misses + sum(len(m) for m in missing.values())
        if missing:  # one extraction pass over every missed image, then one entry per bucket
            todo = [d for members in missing.values() for d in members]
            fresh = extract_features(fusion, [first_path[d] for d in todo], reader, image_size, **extract_options)
            by_digest.update(zip(todo, fresh, strict=True))
            for entry, members in missing.items():
                tensor = torch.stack([by_digest[d] for d in members])
                _atomic_save(tensor, {"digests": json.dumps(members), "checksum": _tensor_checksum(tensor)}, entry)
        return torch.stack([by_digest[d] for d in digests]) if digests else torch.empty(0, fusion.num_features)



__all__ = ["FeatureCache", "extract_features", "extractor_key", "library_versions"]
