"""Extraction throughput on one GPU: plain timm forwards in several precisions against the engine's path.

In one process on one device, with random weights, ``torch.inference_mode`` and inputs made on the device (no host
decoding), it times a plain forward of each backbone (``timm.create_model(name, num_classes=0)``) on the normalised
3-channel batch in fp32, tf32, bf16 autocast, bf16 + channels_last and torch.compile + bf16 + channels_last; then
the engine's extraction path: ``BackboneFusion`` on the grayscale (B, 1, H, W) batch inside
``accel.precision_context`` with the ``auto`` precision and memory format, its output copied to the host as
``features.extract_features`` does, eagerly and through ``accel.Compiled``. CUDA work is synchronised around every
timed region; warm-up batches come first, and the first compiled call is timed on its own ("compile took").

    python bench/bench_gpu.py --json $OUT/bench_gpu.json                     # H100/H200, paper's backbones
    python bench/bench_gpu.py --device cpu --batch 2 --batches 1 --backbones resnet18 --size 64 --no-compile

Prints images/s per mode and the ratios engine default / plain bf16+channels_last and engine compiled / plain
compiled (targets >= 0.9). Needs torch, timm and torchvision, not pydantic: only ``mtl_core.accel`` and
``mtl_core.features.backbones`` are imported, from this checkout.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the GPU machine has this checkout, not the package

import timm  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from mtl_core.accel import Compiled, precision_context, resolve_precision, use_channels_last  # noqa: E402
from mtl_core.features import BackboneFusion  # noqa: E402

PLAIN = {"fp32": "plain fp32", "tf32": "plain tf32", "bf16": "plain bf16 autocast",
         "bf16_cl": "plain bf16 autocast + channels_last", "compiled": "plain torch.compile + bf16 + channels_last"}
ENGINE = {"engine": "engine default (auto precision and channels_last, output to host)",
          "engine_on_device": "engine default, output kept on the device",
          "engine_compiled": "engine compiled (accel.Compiled, output to host)"}
RATIOS = {"engine default / plain bf16+channels_last": ("engine", "bf16_cl"),
          "engine compiled / plain compiled": ("engine_compiled", "compiled")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbones", default="densenet161,efficientnet_b7", help="comma-separated model names")
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per mode before timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes")
    parser.add_argument("--modes", default=",".join([*PLAIN, *ENGINE]), help="comma-separated subset of modes")
    parser.add_argument("--plain", choices=("timm", "engine"), default="timm",
                        help="plain side: timm.create_model(name), or a copy of the network the engine built "
                             "(differs where the engine takes a backbone from torchvision)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable, device: torch.device) -> float:
    """Seconds of one call of ``step``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def images_per_second(step: Callable, args: argparse.Namespace, device: torch.device) -> float:
    for _ in range(args.warmup):
        step()
    return args.batch * args.batches / timed(lambda: [step() for _ in range(args.batches)], device)


@contextmanager
def plain_context(mode: str, device: torch.device) -> Iterator[None]:
    """TF32 off (fp32) or on (tf32) for matmuls and convolutions; bf16 autocast for the other modes."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if mode in ("fp32", "tf32"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        if mode in ("fp32", "tf32"):
            yield
        else:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def build_plain(names: list[str], fusion: BackboneFusion, library: str, device: torch.device) -> list:
    """The plain models: fresh timm models (random weights), or copies of the engine's own networks."""
    if library == "engine":
        return [copy.deepcopy(b.model).to(device).eval() for b in fusion.backbones]
    return [timm.create_model(n, pretrained=False, num_classes=0).to(device).eval() for n in names]


def run_plain(modes: list[str], models: list, inputs: list[torch.Tensor], args, device, say) -> None:
    """Time the plain modes in order; the channels_last modes convert the models and inputs once."""
    for mode in modes:
        if mode in ("bf16_cl", "compiled") and not inputs[0].is_contiguous(memory_format=torch.channels_last):
            models = [m.to(memory_format=torch.channels_last) for m in models]
            inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
        forwards = [torch.compile(m) for m in models] if mode == "compiled" else models

        def step(mode=mode, forwards=forwards, inputs=inputs):
            with plain_context(mode, device):
                return torch.cat([f(x) for f, x in zip(forwards, inputs, strict=True)], dim=1)

        if mode == "compiled":
            say.compile_time("plain", timed(step, device))
        say.rate(mode, PLAIN[mode], images_per_second(step, args, device))


def run_engine(modes: list[str], fusion: BackboneFusion, gray: torch.Tensor, args, device, say) -> None:
    """Time the engine's path: precision and channels_last from ``auto``, as ``extract_features`` does."""
    precision = resolve_precision("auto", device)
    if use_channels_last("auto", device):
        fusion.to(memory_format=torch.channels_last)
    say.figures["engine_settings"] = {"precision": precision, "channels_last": use_channels_last("auto", device)}
    out = torch.empty(args.batch, fusion.num_features)  # the host feature matrix extract_features fills
    for mode in modes:
        forward = Compiled(fusion, mode == "engine_compiled")

        def step(mode=mode, forward=forward):
            with precision_context(precision, device):
                fused = forward(gray)
            if mode == "engine_on_device":
                return fused.float()
            out[:] = fused.float().cpu()
            return out

        if mode == "engine_compiled":
            say.compile_time("engine", timed(step, device))
            if not forward.enabled:
                say.line("engine: torch.compile failed (see the warning above); the figure is eager")
        say.rate(mode, ENGINE[mode], images_per_second(step, args, device))


class Reporter:
    """Prints each figure as it comes and keeps them all, written to ``--json`` after each one."""

    def __init__(self, path: Path | None, figures: dict) -> None:
        self.path, self.figures = path, figures | {"images_per_s": {}, "compile_s": {}, "ratios": {}}

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.save()

    def rate(self, mode: str, label: str, value: float) -> None:
        self.figures["images_per_s"][mode] = value
        self.line(f"{label + ':':<72} {value:9.1f} images/s")

    def compile_time(self, side: str, seconds: float) -> None:
        self.figures["compile_s"][side] = seconds
        self.line(f"compile took {seconds:.1f} s ({side}, first call)")

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.figures, indent=2, default=str))


def describe(device: torch.device, args: argparse.Namespace) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": name, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"torch": torch.__version__, "timm": timm.__version__, "torchvision": torchvision.__version__,
                         "cuda": torch.version.cuda, "python": platform.python_version()},
            "settings": {k: str(v) for k, v in vars(args).items()}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    modes = [m for m in args.modes.split(",") if m and not (args.no_compile and m.endswith("compiled"))]
    unknown = sorted(set(modes) - set(PLAIN) - set(ENGINE))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {', '.join([*PLAIN, *ENGINE])}")
    say = Reporter(args.json, describe(device, args))
    info = say.figures
    say.line(f"{info['device']} | {info['date']} | torch {torch.__version__} timm {timm.__version__} "
             f"torchvision {torchvision.__version__} | {','.join(names)} at {args.size} | batch {args.batch} x "
             f"{args.batches} timed after {args.warmup} warm-up | plain side: {args.plain}")
    torch.manual_seed(0)
    fusion = BackboneFusion(names, weights="random", image_size=args.size).to(device).eval()
    for b in fusion.backbones:
        if args.plain == "timm" and b.info.source != "timm":
            say.line(f"NOTE: the engine builds {b.info.name} from {b.info.source}, the plain side from timm: two "
                     f"implementations, so the ratios compare them too (--plain engine times the engine's own)")
    gray = torch.rand(args.batch, 1, args.size, args.size, device=device)
    # the plain side's input, prepared outside the clock: normalised 3-channel, per backbone
    inputs = [((gray.expand(-1, 3, -1, -1) - b.mean) / b.std).contiguous() for b in fusion.backbones]
    with torch.inference_mode():
        run_plain([m for m in PLAIN if m in modes], build_plain(names, fusion, args.plain, device), inputs, args,
                  device, say)
        run_engine([m for m in ENGINE if m in modes], fusion, gray, args, device, say)
    rates = info["images_per_s"]
    for label, (engine, plain) in RATIOS.items():
        if engine in rates and plain in rates:
            info["ratios"][label] = rates[engine] / rates[plain]
            say.line(f"ratio {label}: {rates[engine] / rates[plain]:.3f} (target >= 0.9)")
    if device.type != "cuda" and info["ratios"]:
        say.line("note: on the CPU, auto means fp32 without channels_last, so the first ratio compares precisions")


if __name__ == "__main__":
    main()
