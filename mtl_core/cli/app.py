"""The ``mtl`` command line. User mistakes become one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import atexit
import copy
import gc
import json
import logging
import os
import sys
import threading
from pathlib import Path

from ..errors import MTLError
from . import export_commands

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def _progress(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Train and evaluate an example folder."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..config import load_config
    from ..workflow import execute

    config = load_config(Path(args.dir), _overrides(args))
    try:
        result = execute(config, data=args.data, output=args.output, say=_say, progress=_progress,
                         resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:  # every finished epoch is checkpointed: say how to continue
        _say(f"interrupted: resume with `{_resume_command(args, args.output or Path(config.output))}`")
        return EXIT_INTERRUPTED
    if not result.metrics:  # a process of a torchrun run other than rank 0: rank 0 reports
        return 0
    print(result.table)
    if result.metrics.get("delta_m") is not None:
        print(f"\nmulti-task gain Delta_m over single-task models: {result.metrics['delta_m']:.2f} %")
    print(f"\nrun folder: {result.output} (wall time {result.metrics['run']['wall_time_s']} s)")
    return 0


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values plus ``--folds`` / ``--repeats`` as ``evaluation.*`` overrides."""
    return list(args.set) + [f"evaluation.{flag}={getattr(args, flag)}" for flag in ("folds", "repeats")
                             if getattr(args, flag, None) is not None]


def _resume_command(args: argparse.Namespace, output: Path) -> str:
    """The `mtl run` command line that continues an interrupted run."""
    import shlex

    parts = ["mtl", "run", str(args.dir)] + (["--data", str(args.data)] if args.data else [])
    parts += [item for value in args.set for item in ("--set", value)]
    parts += [item for flag in ("folds", "repeats") if getattr(args, flag, None) is not None
              for item in (f"--{flag}", str(getattr(args, flag)))]
    return shlex.join([*parts, "--resume", "--output", str(output)])


def cmd_compare(args: argparse.Namespace) -> int:
    """Train the same setup on several backbone sets (and ablations) and tabulate the results."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..workflow import compare

    frame = compare(Path(args.dir), args.backbones, ablations=args.ablations, data=args.data, output=args.output,
                    variants=args.variant, weightings=args.weightings, architectures=args.architectures,
                    overrides=_overrides(args),
                    allow_random=args.allow_random, say=_say, progress=_progress, overwrite=args.overwrite)
    print(f"{len(frame)} variants compared: {args.output / 'compare.csv'}, {args.output / 'compare.md'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a config, its plugin and (when at hand) its data with every check `mtl run` makes before extraction."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..config import load_config
    from ..workflow import check_run

    config = load_config(Path(args.dir), _overrides(args))
    checked = check_run(config, args.data, say=_say, build=True)
    if checked.fallback:
        print(f"note: {checked.fallback}")
    model = checked.model
    print(f"ok: plugin {config.plugin!r}, {len(checked.tasks)} tasks ({', '.join(t.name for t in checked.tasks)}), "
          f"backbones {', '.join(model.backbones)} at {checked.image_size} px, pooling {model.pooling}")
    if checked.records is None:
        print("data: not checked (no data folder at hand: give --data PATH, set data.path, or run once to generate "
              "the plugin's synthetic data)")
    else:
        folds = config.evaluation
        protocol = "one held-out split" if folds.folds == 1 else f"{folds.folds} folds x {folds.repeats} repeat(s)"
        print(f"data: {len(checked.records)} cases in {checked.data_dir}, {protocol}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every task for images with a finished run."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..io import atomic_write, csv_text
    from ..workflow import format_table
    from ..workflow.deploy import predict_with

    kind = args.format or ("table" if sys.stdout.isatty() and args.output is None else "csv")
    if kind == "json" and args.engine == "onnx":
        raise MTLError("--format json describes predictions with the run's PyTorch tasks; with --engine onnx use "
                       "--format csv or table")
    done = predict_with(Path(args.run_dir), [Path(p) for p in args.images], args.engine, args.onnx)
    frame, units = done.frame, done.units
    if kind == "json":
        text = json.dumps(done.rows, indent=2) + "\n"
    elif kind == "table":
        text = format_table(frame, units) + "\n"
    else:
        text = csv_text(frame)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write(args.output, text)
        written = [args.output]
        if kind == "csv":  # the units of the columns beside the numbers, which stay bare for every reader
            written.append(args.output.with_name(f"{args.output.stem}.units.csv"))
            atomic_write(written[-1], csv_text(_units_frame(units)))
        _say(f"wrote {', '.join(str(p) for p in written)}")
    flagged = list(frame["image"][frame["out_of_distribution"] == 1]) if "out_of_distribution" in frame else []
    if flagged:
        print(f"WARNING: {len(flagged)} image(s) lie far from the training images (out-of-distribution score > 1: "
              f"farther than {100 * done.quantile:g}% of held-out cases); do not trust their predictions: "
              f"{', '.join(flagged)}", file=sys.stderr)
    return 0


def _units_frame(units: dict[str, str]):
    """The units sidecar of ``mtl predict --format csv --output FILE``: one row per column of FILE."""
    import pandas as pd  # lazy: only predict writes it, and `mtl --help` loads no pandas

    return pd.DataFrame({"column": list(units), "unit": list(units.values())})


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins with their tasks, and each broken one as broken with its reason. Exit 0: the listing
    is information (`mtl plugins check NAME` and `mtl run` exit non-zero on a broken plugin they are asked for)."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..plugins import list_plugins

    infos = list_plugins(load=True)
    if not infos:
        print("no plugins installed (entry-point group 'mtl.plugins')")
    for info in infos:
        state = f"broken: {info.problem}" if info.problem else f"tasks: {', '.join(info.tasks)}"
        print(f"{info.name}  {info.distribution} {info.version}  {state}")
    broken = [info.name for info in infos if info.problem]
    if broken:
        print(f"{len(broken)} of {len(infos)} plugins broken ({', '.join(broken)}); "
              f"`mtl plugins check NAME` says more")
    return 0


def cmd_plugins_check(args: argparse.Namespace) -> int:
    """Run a plugin through the conformance checks; exit 1 when one fails."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..config import apply_overrides, load_config
    from ..plugins import check_plugin

    options, data = {}, args.data
    if args.config:
        config = load_config(Path(args.config))
        options = config.plugin_options
        if data is None and config.data.path and Path(config.data.path).exists():
            data = Path(config.data.path)
    options = apply_overrides(copy.deepcopy(options), args.option)  # the config's own options stay as validated
    report = check_plugin(args.name, options, data, samples=args.samples,
                          image_size=args.image_size)
    print(report.format())
    return 0 if report.ok else 1


def cmd_cache(args: argparse.Namespace) -> int:
    """Show the cache folder's size per kind (`mtl cache`), or prune it by age or size (`mtl cache prune`)."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..io import cache_report, prune_cache

    if getattr(args, "cache_command", None) == "prune":
        lines = prune_cache(args.older_than, args.max_size, dry_run=args.dry_run)
    else:
        lines = cache_report()
    print("\n".join(lines))
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Write a plugin's synthetic data set."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..config import apply_overrides
    from ..plugins import load_plugin

    plugin = load_plugin(args.plugin)
    options = apply_overrides({}, args.option)
    try:
        made = plugin.synthetic_data(Path(args.out), **options)
    except TypeError as exc:
        raise MTLError(f"plugin {args.plugin!r} does not take these generator options ({exc})") from None
    if made is None:
        raise MTLError(f"plugin {args.plugin!r} has no synthetic data generator")
    print(f"wrote {made}")
    return 0


def cmd_init_plugin(args: argparse.Namespace) -> int:
    """Write a new plugin package to fill in."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..scaffold import write_plugin

    output = args.output or Path(args.name)
    files = write_plugin(args.name, output)
    print(f"wrote plugin {args.name!r} in {output}: {', '.join(p.relative_to(output).as_posix() for p in files)}")
    print(f"next: pip install -e {output}  (offline: add --no-build-isolation), then `mtl plugins check {args.name}` "
          f"and `mtl run {output / 'example'}`")
    return 0


def cmd_init_table(args: argparse.Namespace) -> int:
    """Infer a `table` config from a data folder's CSV."""
    # lazy: each command imports what it needs when it runs, so `mtl --help` loads no torch
    from ..scaffold import write_table_config

    data = Path(args.data_dir)
    output = args.output or Path(f"{data.resolve().name or 'table'}-config")
    path, guess = write_table_config(data, output, args.table)
    print(f"wrote {path}: {len(guess.tasks)} task(s) from {guess.table} ({guess.rows} rows), id column "
          f"{guess.id_column!r}, files in column {guess.file_column!r}")
    for column in guess.columns:
        label = f"task {column.task!r}" if column.role == "task" else column.role.replace("_", " ")
        print(f"  {column.name}: {label}: {column.why}")
    print(f"review the comments in {path}, then `mtl validate {output}` and `mtl run {output}`")
    return 0


_OVERWRITE_HELP = ("write into an --output folder that holds files mtl did not write (or another command's); only "
                   "the run's own files are replaced there, nothing else is deleted")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mtl``."""
    parser = argparse.ArgumentParser(prog="mtl", description="Multi-task deep learning on medical images.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and evaluate an example folder")
    p.add_argument("dir", help="example folder with config.yaml (or a config file)")
    p.add_argument("--data", type=Path, help="data folder (default: the config's, else synthetic data)")
    p.add_argument("--output", type=Path, help="run folder to write")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--folds", type=int, help="K-fold cross-validation (1: one held-out split)")
    p.add_argument("--repeats", type=int, help="repeat the K folds with other shuffles")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints "
                   "(same config, --set and --data)")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("compare", help="the same multi-task setup on several backbone sets and ablations")
    p.add_argument("dir", help="example folder with config.yaml")
    p.add_argument("--backbones", required=True, help="sets separated by ';', fused backbones joined by '+'")
    p.add_argument("--ablations", help="comma-separated: no_residual, no_label_smoothing, equal_weights")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="a named row of settings (repeat NAME to add overrides), e.g. "
                        "regression_heads:plugin_options.localisation=regression")
    p.add_argument("--weightings", metavar="NAMES", help="loss strategies or gradient methods separated by ';', "
                   "each a row, e.g. 'static;uncertainty;pcgrad;nash_mtl'")
    p.add_argument("--architectures", metavar="NAMES", help="sharing architectures separated by ';', each a row, "
                   "e.g. 'residual;mmoe;adapters'")
    p.add_argument("--data", type=Path)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--folds", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--allow-random", action="store_true", help="compare backbones without pretrained weights")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("validate", help="check a config, its plugin and its data as `mtl run` does before extracting "
                                        "features, without training")
    p.add_argument("dir", help="example folder with config.yaml (or a config file)")
    p.add_argument("--data", type=Path, help="data folder (default: the config's, else the plugin's synthetic data "
                                             "when it was generated before)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--folds", type=int, help="K-fold cross-validation (1: one held-out split)")
    p.add_argument("--repeats", type=int, help="repeat the K folds with other shuffles")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("predict", help="predict every task for images with a finished run")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+")
    p.add_argument("--format", choices=["csv", "json", "table"],
                   help="csv: one numeric column per value (default when the output is not a terminal); json: "
                        "every task's prediction with its unit; table: aligned for reading (default on a terminal)")
    p.add_argument("--output", type=Path, help="write to this file instead of the standard output (csv: and the "
                                               "columns' units to FILE_STEM.units.csv beside it)")
    export_commands.add_engine_options(p)
    p.set_defaults(func=cmd_predict)
    export_commands.add_commands(sub)
    p = sub.add_parser("plugins", help="list installed plugins; 'plugins check NAME' checks one")
    p.set_defaults(func=cmd_plugins)
    check = p.add_subparsers(dest="plugins_command").add_parser("check", help="run a plugin through the checks "
                                                                               "the engine relies on")
    check.add_argument("name", help="installed plugin name, or path/to/file.py:ClassName")
    check.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    check.add_argument("--config", type=Path, help="take the plugin options (and data.path) from this config")
    check.add_argument("--data", type=Path, help="data folder (default: the plugin's synthetic data)")
    check.add_argument("--samples", type=int, default=8, help="cases the image and batch checks read")
    check.add_argument("--image-size", type=int, default=64, help="side the sampled images are resized to")
    check.set_defaults(func=cmd_plugins_check)
    p = sub.add_parser("cache", help="show the cache folder's size per kind; 'cache prune' removes old entries")
    p.set_defaults(func=cmd_cache)
    prune = p.add_subparsers(dest="cache_command").add_parser(
        "prune", help="remove cache entries unused for a time, or the least recently used beyond a size")
    prune.add_argument("--older-than", metavar="AGE", help="entries last used more than AGE ago (30d, 12h, 2w)")
    prune.add_argument("--max-size", metavar="SIZE", help="then the least recently used until the cache holds at "
                                                          "most SIZE (20G, 500M; powers of 1024)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    prune.set_defaults(func=cmd_cache)
    p = sub.add_parser("synthesize", help="write a plugin's synthetic data set (a generated phantom, for instance)")
    p.add_argument("plugin")
    p.add_argument("out")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="generator option")
    p.set_defaults(func=cmd_synthesize)
    p = sub.add_parser("init", help="start a plugin package ('init plugin NAME') or a table config inferred from a "
                                    "CSV ('init table DATA_DIR')")
    init = p.add_subparsers(dest="init_command", required=True)
    q = init.add_parser("plugin", help="write a plugin package that installs, passes `mtl plugins check` and runs")
    q.add_argument("name", help="plugin name: snake_case, a Python package name")
    q.add_argument("--output", type=Path, help="folder to write (new or empty; default: ./NAME)")
    q.set_defaults(func=cmd_init_plugin)
    q = init.add_parser("table", help="infer a config of the `table` plugin from a folder of images and its CSV")
    q.add_argument("data_dir", help="folder with the table and the images")
    q.add_argument("--table", help="the table, relative to DATA_DIR (default: the one CSV or TSV there)")
    q.add_argument("--output", type=Path, help="folder for config.yaml (new or empty; default: ./DATA_DIR's "
                                               "name-config)")
    q.set_defaults(func=cmd_init_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtl`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except MTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The ``mtl`` console script: :func:`main`, then :func:`exit_quickly`.

    The cyclic garbage collector runs every 50,000 allocations instead of 700: importing torch, torch._dynamo,
    pandas and matplotlib creates about a million long-lived objects that each full collection scans again,
    1-2 s of a 15 s run on a 2-core CPU. Reference counting still frees everything acyclic at once.
    """
    gc.set_threshold(50_000, 20, 20)
    exit_quickly(main())


def exit_quickly(code: int) -> None:
    """Exit with ``code`` without the interpreter's teardown of torch, timm and torchvision (1.3 s on a 2-core
    CPU, longer than some whole commands): streams flushed, ``atexit`` handlers run, then ``os._exit``. A normal
    exit when another non-daemon thread is still running, so that nothing unfinished is cut off, and under a
    profiler or debugger."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or sys.getprofile() or sys.gettrace():  # a profiler or debugger writes its results at exit
        sys.exit(code)
    atexit._run_exitfuncs()  # logging.shutdown, temporary folders, multiprocessing clean-up
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
