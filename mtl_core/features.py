"""Frozen-backbone feature extraction and its content-addressed cache.

The cache key of an entry covers the image bytes (SHA-256 of each file), the preprocessing, the backbones with
their pooling and weights' identity, and the library versions, so any change misses the cache and nothing stale
is reused. Entries are grouped into 16 bucket files by image digest; a lookup is per image, so adding or changing
one image extracts only that image. Each bucket file carries a checksum of its tensor, checked on read.
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
from .errors import MTLError, RunError
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
    except OSError as exc:
        raise RunError(f"cannot write the feature cache {path}: {exc.strerror or exc}; free space or set "
                       f"MTL_CACHE_DIR to another folder") from None
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

    def _load(self, path: Path) -> dict[str, torch.Tensor]:
        """Digest -> features of one bucket file; empty when absent or corrupt (a corrupt file is dropped)."""
        if not path.is_file():
            return {}
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensor = fh.get_tensor("features")
            digests = json.loads(meta.get("digests", "[]"))
            if meta.get("checksum") != _tensor_checksum(tensor) or len(digests) != len(tensor):
                raise ValueError("checksum does not match the contents")
            return dict(zip(digests, tensor, strict=True))
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("dropping corrupt feature cache entry %s (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return {}

    def features(self, fusion: BackboneFusion, paths: list[Path], reader: ImageReader, image_size: int, *,
                 reader_id: str | None = None, **extract_options) -> torch.Tensor:
        """Features (N, F) for ``paths``, from the cache where possible; misses are extracted and stored.

        Args:
            reader_id: identity of ``reader`` in the cache key; its qualified name when not given.
        """
        reader_id = reader_id or f"{getattr(reader, '__module__', '')}.{getattr(reader, '__qualname__', reader)}"
        digests = [file_digest(Path(p)) for p in paths]
        folder = self.root / extractor_key(fusion, image_size, reader_id)[:32]
        first_path = dict(zip(reversed(digests), reversed(list(paths)), strict=True))
        stored = {b: self._load(folder / f"{b}.safetensors") for b in sorted({d[0] for d in first_path})}
        by_digest = {d: stored[d[0]][d] for d in first_path if d in stored[d[0]]}
        todo = [d for d in first_path if d not in by_digest]
        self.hits, self.misses = self.hits + len(by_digest), self.misses + len(todo)
        if todo:  # one extraction pass over every missed image, then each touched bucket is rewritten whole
            fresh = extract_features(fusion, [first_path[d] for d in todo], reader, image_size, **extract_options)
            by_digest.update(zip(todo, fresh, strict=True))
            for bucket in sorted({d[0] for d in todo}):
                merged = stored[bucket] | {d: by_digest[d] for d in todo if d[0] == bucket}
                members = sorted(merged)
                tensor = torch.stack([merged[d] for d in members])
                _atomic_save(tensor, {"digests": json.dumps(members), "checksum": _tensor_checksum(tensor)},
                             folder / f"{bucket}.safetensors")
        return torch.stack([by_digest[d] for d in digests]) if digests else torch.empty(0, fusion.num_features)



__all__ = ["FeatureCache", "extract_features", "extractor_key", "library_versions"]
