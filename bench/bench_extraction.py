"""Fused feature extraction through ``BackboneFusion`` against a plain timm (or torchvision) forward of the same
backbones.

Both sides run in this process with the same threads, frozen, random weights (the engine's, copied into the plain
models) and ``torch.inference_mode``. The engine side gets a grayscale batch (B, 1, H, W) in [0, 1] and does its own
per-backbone preprocessing (3 channels, normalisation); the plain side gets, per backbone, the already normalised
3-channel batch and calls ``model(x)``. After a warm-up of each side, batches alternate between the sides (and
which side goes first), ``batches * rounds`` per side.

    python bench/bench_extraction.py --backbones densenet161,efficientnet_b7 --batch 8 --batches 2

Prints images/s of each side and the ratio engine/plain (target >= 0.95).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import timm
import torch

from mtl_core.features import BackboneFusion, backbone_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="resnet18,efficientnet_b0", help="comma-separated timm model names")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per side and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each round times both sides, order alternates")
    parser.add_argument("--size", type=int, default=224, help="image side (both sides run at this resolution)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    return parser.parse_args(argv)


def build(names: list[str], size: int) -> tuple[BackboneFusion, list[torch.nn.Module]]:
    """The engine's frozen fusion and plain library models carrying the very same weights: timm's, or for names
    the engine builds from torchvision (e.g. efficientnet_b7, which timm has no ImageNet weights for) an
    independent copy of that torchvision model, called directly."""
    fusion = BackboneFusion(names, weights="random", image_size=size, frozen=True)
    plain = []
    for name, backbone in zip(names, fusion.backbones, strict=True):
        if backbone_source(name) == "torchvision":
            plain.append(copy.deepcopy(backbone.model).eval())
            continue
        model = timm.create_model(name, pretrained=False, num_classes=0).eval()
        model.load_state_dict(backbone.model.state_dict())
        plain.append(model)
    return fusion, plain


def engine_step(fusion: BackboneFusion, gray: torch.Tensor) -> torch.Tensor:
    return fusion(gray)  # (B, sum of widths), preprocessing included


def plain_step(models: list[torch.nn.Module], inputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([m(x) for m, x in zip(models, inputs, strict=True)], dim=1)


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    fusion, plain = build(names, args.size)
    gray = torch.rand(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    # the plain side's input: what a user of timm would feed, normalised per backbone, prepared outside the clock
    inputs = [((gray.expand(-1, 3, -1, -1) - b.mean) / b.std).contiguous() for b in fusion.backbones]
    sides = {"engine": lambda: engine_step(fusion, gray), "plain": lambda: plain_step(plain, inputs)}
    seconds: dict[str, list[float]] = {"engine": [], "plain": []}
    with torch.inference_mode():
        difference = (engine_step(fusion, gray) - plain_step(plain, inputs)).abs().max().item()  # also a warm-up
        for side in sides.values():
            side()
        # batch by batch, alternating which side goes first, so that drifts in machine load hit both sides alike
        for i in range(args.batches * args.rounds):
            for name in (["engine", "plain"] if i % 2 == 0 else ["plain", "engine"]):
                seconds[name].append(timed(sides[name]))
    rate = {k: args.batch * len(v) / sum(v) for k, v in seconds.items()}
    median = {k: args.batch / statistics.median(v) for k, v in seconds.items()}
    print(f"backbones {','.join(names)} | batch {args.batch} x {args.batches} batches x {args.rounds} rounds | "
          f"size {args.size} | threads {torch.get_num_threads()} | torch {torch.__version__} timm {timm.__version__} "
          f"| {platform.processor() or platform.machine()}")
    print(f"fused width {fusion.num_features} | max |engine - plain| = {difference:.2e}")
    print(f"engine (BackboneFusion, gray input + preprocessing): {rate['engine']:.2f} images/s "
          f"(median batch: {median['engine']:.2f})")
    print(f"plain library forward (normalised 3-channel input):  {rate['plain']:.2f} images/s "
          f"(median batch: {median['plain']:.2f})")
    print(f"ratio engine/plain: {rate['engine'] / rate['plain']:.3f} "
          f"(median batches: {median['engine'] / median['plain']:.3f}; target >= 0.95)")


if __name__ == "__main__":
    main()
