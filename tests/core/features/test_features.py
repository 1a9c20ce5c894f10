"""Tests for mtl_core.features.cache: the content-addressed feature cache and feature extraction."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mtl_core.features import FeatureCache, extract_features
from mtl_core.io import cache_dir, file_digest, read_image

SIZE = 32


def _features(cache: FeatureCache, fusion, paths, reader=read_image, **options) -> torch.Tensor:
    return cache.features(fusion, paths, reader, SIZE, **options)


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.safetensors"))


@pytest.fixture
def cache_root(tmp_cache: Path) -> Path:
    assert cache_dir() == tmp_cache  # the run pipeline puts its feature cache under $MTL_CACHE_DIR
    return tmp_cache / "features"


def test_cached_features_equal_fresh_extraction_and_second_call_is_all_hits(cache_root, make_pngs, make_fusion):
    paths, fusion = make_pngs(6), make_fusion()
    cold_cache = FeatureCache(cache_root)
    cold = _features(cold_cache, fusion, paths)
    assert (cold_cache.hits, cold_cache.misses) == (0, 6)
    fresh = extract_features(fusion, paths, read_image, SIZE)
    assert cold.shape == (6, fusion.num_features)
    assert torch.equal(cold, fresh)
    warm_cache = FeatureCache(cache_root)
    warm = _features(warm_cache, fusion, paths)
    assert (warm_cache.hits, warm_cache.misses) == (0 + 6, 0)
    assert torch.equal(warm, fresh)
    assert _entries(cache_root) and not list(cache_root.rglob("*.tmp"))  # entries are renamed into place


def test_changed_image_gets_new_features_and_the_others_come_from_the_cache(cache_root, make_pngs, make_fusion,
                                                                          write_png):
    paths, fusion = make_pngs(8), make_fusion()
    before = _features(FeatureCache(cache_root), fusion, paths)
    write_png(paths[3], seed=999)  # same file name, new pixels
    cache = FeatureCache(cache_root)
    after = _features(cache, fusion, paths)
    assert 1 <= cache.misses < len(paths) and cache.hits == len(paths) - cache.misses
    assert not torch.allclose(after[3], before[3])
    torch.testing.assert_close(after[3], extract_features(fusion, [paths[3]], read_image, SIZE)[0])
    others = [i for i in range(len(paths)) if i != 3]
    assert torch.equal(after[others], before[others])


def _shares_a_bucket(paths: list[Path]) -> int:
    """Index of an image whose cache bucket (first hex digit of its digest) holds another image too."""
    buckets = Counter(file_digest(p)[0] for p in paths)
    return next(i for i, p in enumerate(paths) if buckets[file_digest(p)[0]] > 1)


@pytest.mark.parametrize("change", ["modify", "add", "drop"])
def test_one_changed_image_misses_only_for_that_image(cache_root, make_pngs, make_fusion, write_png, tmp_path,
                                                     change):
    paths, fusion = make_pngs(20), make_fusion()  # 20 images in 16 buckets: some bucket holds two
    _features(FeatureCache(cache_root), fusion, paths)
    index = _shares_a_bucket(paths)
    if change == "modify":
        write_png(paths[index], seed=999)
    elif change == "drop":
        paths = paths[:index] + paths[index + 1:]
    else:
        occupied = {file_digest(p)[0] for p in paths}
        extra = (write_png(tmp_path / f"extra{s}.png", seed=s) for s in range(1000, 1100))
        paths = [*paths, next(p for p in extra if file_digest(p)[0] in occupied)]
    cache = FeatureCache(cache_root)
    _features(cache, fusion, paths)
    assert cache.misses == (0 if change == "drop" else 1)


def _weights_file(make_fusion, path: Path, seed: int) -> str:
    donor = make_fusion(["test_resnet"], seed=seed)
    save_file({k: v.contiguous() for k, v in donor.backbones[0].model.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize("variant", ["backbone_list", "seed", "weights_file", "pooling"])
def test_another_extractor_misses_and_both_stay_cached(cache_root, make_pngs, make_fusion, tmp_path, variant):
    paths = make_pngs(4)
    base_weights = {"test_resnet": _weights_file(make_fusion, tmp_path / "a.safetensors", 1),
                    "test_efficientnet": "random"}
    base = make_fusion(weights=base_weights)
    other = {
        "backbone_list": lambda: make_fusion(["test_resnet"], weights={"test_resnet": base_weights["test_resnet"]}),
        "seed": lambda: make_fusion(weights=base_weights, seed=5),
        "weights_file": lambda: make_fusion(weights={
            **base_weights, "test_resnet": _weights_file(make_fusion, tmp_path / "b.safetensors", 2)}),
        "pooling": lambda: make_fusion(weights=base_weights, pooling="grid"),
    }[variant]()
    first = _features(FeatureCache(cache_root), base, paths)
    cache = FeatureCache(cache_root)
    second = _features(cache, other, paths)
    assert (cache.hits, cache.misses) == (0, 4)
    assert second.shape != first.shape or not torch.allclose(second, first)
    again = FeatureCache(cache_root)
    assert torch.equal(_features(again, base, paths), first) and again.misses == 0


def test_a_different_reader_id_misses(cache_root, make_pngs, make_fusion):
    paths, fusion = make_pngs(3), make_fusion()
    _features(FeatureCache(cache_root), fusion, paths, reader_id="plugin-a:1.0")
    cache = FeatureCache(cache_root)
    _features(cache, fusion, paths, reader=lambda p: 1.0 - read_image(p), reader_id="plugin-a:1.1")
    assert (cache.hits, cache.misses) == (0, 3)


def test_a_different_reader_never_gets_stale_features(cache_root, make_pngs, make_fusion):
    paths, fusion = make_pngs(3), make_fusion()
    _features(FeatureCache(cache_root), fusion, paths)
    inverted = lambda p: 1.0 - read_image(p)  # noqa: E731
    got = _features(FeatureCache(cache_root), fusion, paths, reader=inverted)
    torch.testing.assert_close(got, extract_features(fusion, paths, inverted, SIZE))


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "garbage"])
def test_corrupt_entry_is_dropped_and_recomputed(cache_root, make_pngs, make_fusion, caplog, damage):
    paths, fusion = make_pngs(5), make_fusion()
    expected = _features(FeatureCache(cache_root), fusion, paths)
    for entry in _entries(cache_root):
        data = bytearray(entry.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "flip_data":
            data[-1] ^= 0xFF  # the last byte belongs to the tensor: its checksum no longer matches
        else:
            data = bytearray(b"\x00not safetensors")
        entry.write_bytes(bytes(data))
    cache = FeatureCache(cache_root)
    with caplog.at_level(logging.WARNING, logger="mtl_core.features.cache"):
        got = _features(cache, fusion, paths)
    assert (cache.hits, cache.misses) == (0, 5)
    assert torch.equal(got, expected)
    assert "corrupt" in caplog.text
    healed = FeatureCache(cache_root)
    assert torch.equal(_features(healed, fusion, paths), expected) and healed.misses == 0


def test_duplicate_paths_and_empty_requests(cache_root, make_pngs, make_fusion):
    paths, fusion = make_pngs(2), make_fusion()
    cache = FeatureCache(cache_root)
    got = _features(cache, fusion, [paths[0], paths[1], paths[0]])
    assert torch.equal(got[0], got[2]) and cache.misses == 2
    assert _features(cache, fusion, []).shape == (0, fusion.num_features)


def test_extract_features_keeps_the_order_of_paths_whatever_the_batch(make_pngs, make_fusion):
    paths, fusion = make_pngs(5), make_fusion()
    forward = extract_features(fusion, paths, read_image, SIZE, batch_size=2)
    backward = extract_features(fusion, paths[::-1], read_image, SIZE, batch_size=3)
    assert forward.shape == (5, fusion.num_features) and forward.dtype == torch.float32
    torch.testing.assert_close(backward, forward.flip(0), rtol=1e-5, atol=1e-6)


def test_an_interrupted_extraction_keeps_the_chunks_it_finished(cache_root, make_pngs, make_fusion, monkeypatch):
    paths, fusion = make_pngs(9), make_fusion()
    monkeypatch.setattr(FeatureCache, "first_chunk", 2)  # chunks of 2, 4, then 8 images

    def fails_on_the_last(path: Path):
        if path == paths[-1]:
            raise RuntimeError("killed")
        return read_image(path)

    with pytest.raises(RuntimeError):
        _features(FeatureCache(cache_root), fusion, paths, reader=fails_on_the_last, reader_id="png")
    cache = FeatureCache(cache_root)
    again = _features(cache, fusion, paths, reader=read_image, reader_id="png")
    assert (cache.hits, cache.misses) == (6, 3)  # the first two chunks were stored before the failure
    torch.testing.assert_close(again, extract_features(fusion, paths, read_image, SIZE))  # batches differ


def test_the_same_image_listed_twice_fills_both_rows(cache_root, make_pngs, make_fusion):
    paths, fusion = make_pngs(3), make_fusion()
    listed = [paths[0], paths[1], paths[0], paths[2]]
    cache = FeatureCache(cache_root)
    got = _features(cache, fusion, listed)
    assert (cache.hits, cache.misses) == (0, 3) and torch.equal(got[0], got[2])
    warm = FeatureCache(cache_root)
    assert torch.equal(_features(warm, fusion, listed), got) and (warm.hits, warm.misses) == (3, 0)


def test_the_input_cache_serves_decoded_images_exactly_and_follows_edits(tmp_cache, make_pngs, make_fusion,
                                                                          write_png, monkeypatch):
    from mtl_core.data import input_cache

    paths, fusion = make_pngs(4), make_fusion()
    decoded = input_cache.InputCache(tmp_cache / "inputs", "png")
    fresh = extract_features(fusion, paths, read_image, SIZE)
    assert torch.equal(extract_features(fusion, paths, read_image, SIZE, input_cache=decoded), fresh)
    assert len(list((tmp_cache / "inputs").rglob("*.safetensors"))) == 4

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(input_cache, "load_image_tensor", no_decoding)
    assert torch.equal(extract_features(fusion, paths, read_image, SIZE, input_cache=decoded), fresh)
    monkeypatch.undo()
    write_png(paths[1], seed=77)  # an edited image is decoded again, never served stale
    edited = extract_features(fusion, paths, read_image, SIZE, input_cache=decoded)
    assert not torch.allclose(edited[1], fresh[1])
    torch.testing.assert_close(edited[1], extract_features(fusion, [paths[1]], read_image, SIZE)[0])
    entry = sorted((tmp_cache / "inputs").rglob("*.safetensors"))[0]
    entry.write_bytes(entry.read_bytes()[:-8] + b"\0" * 8)  # a corrupt entry is dropped and recomputed
    assert torch.equal(extract_features(fusion, paths, read_image, SIZE, input_cache=decoded), edited)
