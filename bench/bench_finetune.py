"""Fine-tuning throughput of one process: images/s of the engine's training step (backbones, trunk and heads
trained together) with the run's settings, against a plain PyTorch loop over the same backbones.

The engine side is :class:`~mtl_core.train.Trainer` on synthetic images with one binary and one regression task:
fusion -> trunk -> heads, parameter groups, schedule, accumulation, clipping and (optionally) the MONAI
augmentation, exactly as ``mtl run`` with ``model.frozen: false``. The plain side is the textbook loop over the
same timm models: ``model(x)``, concatenation, a linear head, ``loss.backward()``, ``Adam.step()``; the engine gets
a minimal trunk (64 wide, no residual block) so that both sides compute almost the same. Each variant is
warmed up with one batch, then timed over ``--steps`` batches; variants alternate ``--rounds`` times.

    python bench/bench_finetune.py --backbones test_resnet,test_efficientnet --size 64 --batch 32 --steps 8
    python bench/bench_finetune.py --device cuda --backbones resnet50,efficientnet_b0 --size 224 --batch 64 \\
        --precision bf16 --steps 20          # the same on a GPU

Prints images/s of each variant and its ratio to the plain loop (target for ``full``: >= 0.9). The function
:func:`time_finetune` times ``steps`` batches of any run configuration.

With ``--processes 1,2`` it compares instead the ``full`` variant in 1 and 2 processes (docs/distributed.md): for
each count it runs itself under ``python -m torch.distributed.run --standalone --nproc_per_node N`` (``--batch``
is the global batch, each process trains its share in DDP; ``--threads`` are shared out, ``threads // N`` per
process) and prints images/s per process and in all, against the first count; the median of ``--rounds`` rounds
that alternate the counts.

    python bench/bench_finetune.py --processes 1,2 --backbones test_efficientnet_gn --threads 1
    python bench/bench_finetune.py --processes 1,8 --device cuda --backbones efficientnet_b0 --size 224 \
        --batch 256 --steps 20                # one node, 8 GPUs (nccl)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtl_core.config import RunConfig, TrainConfig
from mtl_core.data import Records, TensorData
from mtl_core.data.augment import SAFE_BY_DEFAULT, Augmenter, with_augment
from mtl_core.distributed import Parallel, session
from mtl_core.features import build_fusion
from mtl_core.model import create_model
from mtl_core.tasks import BinaryTask, RegressionTask
from mtl_core.train import LossComposer, Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="test_resnet,test_efficientnet", help="comma-separated timm names")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--steps", type=int, default=8, help="timed batches per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the variants alternate in each")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="training autocast")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--processes", help="compare these process counts under torchrun, e.g. 1,2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a torchrun process: rank 0 writes JSON there
    return parser.parse_args(argv)


def _problem(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, Records, list]:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.random((n, 1, size, size), dtype=np.float32))
    targets = {"flag": (rng.random(n) > 0.5).astype(float), "value": rng.normal(size=n)}
    records = Records([f"c{i}" for i in range(n)], [Path(f"c{i}") for i in range(n)], targets)
    tasks = [BinaryTask("flag"), RegressionTask("value")]
    for task in tasks:
        task.fit(records.targets[task.name])
    return images, records, tasks


def time_finetune(config: RunConfig, steps: int, augment: bool = False, seed: int = 0,
                  parallel: Parallel | None = None) -> float:
    """Images/s of ``steps`` fine-tuning batches of ``config`` (its model, ``data.image_size`` and ``train``
    settings; one epoch of ``steps * train.batch_size`` synthetic images), after one warm-up batch; with
    ``parallel``, of all the processes of a distributed run together."""
    size, batch = config.data.image_size, config.train.batch_size
    images, records, tasks = _problem(steps * batch, size, seed)
    fusion = build_fusion(config.model, size, seed)
    model = create_model(fusion, tasks, config.model.trunk.model_dump(), attach=True)
    trainer = Trainer(model, LossComposer(tasks, config.loss.strategy), config.train.model_copy(update={"epochs": 1}),
                      parallel)
    augmenter = Augmenter(config.train.augment, SAFE_BY_DEFAULT) if augment else None
    warm = with_augment(TensorData.build(images[:batch], records.subset(np.arange(batch)), tasks, False), augmenter)
    trainer.fit(warm)
    data = with_augment(TensorData.build(images, records, tasks, is_features=False), augmenter)
    _sync(trainer.device)
    start = time.perf_counter()
    trainer.fit(data)
    _sync(trainer.device)
    return len(images) / (time.perf_counter() - start)


def time_plain(names: list[str], size: int, batch: int, steps: int, device: str, precision: str) -> float:
    """Images/s of the textbook loop: timm models, concatenated features, a linear head, Adam."""
    import timm

    torch.manual_seed(0)
    models = torch.nn.ModuleList(timm.create_model(n, pretrained=False, num_classes=0) for n in names).to(device)
    width = sum(int(m.num_features) for m in models)
    head = torch.nn.Linear(width, 2).to(device)
    optimiser = torch.optim.Adam([*models.parameters(), *head.parameters()], lr=1e-4)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.rand(batch, 2, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(head(torch.cat([m(x) for m in models], dim=1)).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()
    _sync(torch.device(device))
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(torch.device(device))
    return steps * batch / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _config(args: argparse.Namespace, **model) -> RunConfig:
    train = TrainConfig(batch_size=args.batch, device=args.device, precision=args.precision, lr=1e-4,
                        schedule="cosine", warmup_epochs=0)
    return RunConfig(plugin="bench", data={"image_size": args.size},
                     model={"backbones": args.backbones.split(","), "weights": "random", "frozen": False,
                            "trunk": {"hidden": 64, "depth": 0, "dropout": 0.0}} | model,
                     train=train.model_dump() | {"augment": {"enabled": True}})


def _worker(args: argparse.Namespace) -> None:
    """One process of a torchrun job: the ``full`` variant's images/s; rank 0 writes them to ``args.worker``."""
    with session(args.device) as parallel:
        rate = time_finetune(_config(args), args.steps, parallel=parallel)
        if parallel.main:
            Path(args.worker).write_text(json.dumps({"processes": parallel.world, "images_per_s": rate,
                                                     "per_process": rate / parallel.world}))


def _launch(count: int, args: argparse.Namespace, out: Path) -> dict:
    """This script under torchrun with ``count`` processes; what rank 0 measured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(count),
               str(Path(__file__).resolve()), "--worker", str(out), "--device", args.device, "--backbones",
               args.backbones, "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
               "--precision", args.precision, "--threads", str(max(1, args.threads // count))]
    threads = str(max(1, args.threads // count))  # torchrun would set 1
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": threads}, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def compare_processes(args: argparse.Namespace) -> None:
    """Images/s per process and in all for each count of ``--processes`` (median of the rounds)."""
    counts = [int(c) for c in args.processes.split(",")]
    seen: dict[int, list[dict]] = {c: [] for c in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):  # alternating: a busy moment of the machine hits every count
            for count in counts:
                seen[count].append(_launch(count, args, Path(tmp) / f"{count}-{round_}.json"))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.device}, "
          f"{args.precision}; {args.backbones} at {args.size} px, global batch {args.batch}, {args.steps} steps; "
          f"{args.threads} threads shared out; median of {args.rounds} rounds")
    base = None
    for count in counts:
        best = sorted(seen[count], key=lambda r: r["images_per_s"])[len(seen[count]) // 2]
        base = base or best
        ratio = best["images_per_s"] / base["images_per_s"]
        print(f"{count} process(es) x {max(1, args.threads // count)} thread(s): {best['per_process']:8.1f} "
              f"images/s per process, {best['images_per_s']:8.1f} in all, x{ratio:.2f} of {base['processes']}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        return _worker(args)
    if args.processes:
        return compare_processes(args)
    names = args.backbones.split(",")
    variants = {"full": (_config(args), False), "full + augmentation": (_config(args), True),
                "last 2 stages": (_config(args, trainable_stages=2), False)}
    seen: dict[str, list[float]] = {name: [] for name in ["plain loop", *variants]}
    for _ in range(args.rounds):
        seen["plain loop"].append(time_plain(names, args.size, args.batch, args.steps, args.device, args.precision))
        for name, (config, augment) in variants.items():
            seen[name].append(time_finetune(config, args.steps, augment))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"{args.device}, {args.precision}; {','.join(names)} at {args.size} px, batch {args.batch}, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    plain = statistics.median(seen["plain loop"])
    for name, values in seen.items():
        rate = statistics.median(values)
        print(f"{name:<22} {rate:8.1f} images/s   ratio to the plain loop {rate / plain:5.2f}")


if __name__ == "__main__":
    main()
