"""Reuse, end to end through the real CLI: the JSRT run expressed as a `table` config gives the dedicated plugin's
metrics; the shapes example runs offline out of the box; the plugin of docs/write-a-plugin.md installs, passes
`mtl plugins check`, trains with `mtl run` and passes its own tests; the docs show the code that is tested."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FAST, REPO, mtl

GUIDE = REPO / "docs" / "write-a-plugin.md"
GUIDE_PACKAGE = REPO / "docs" / "examples" / "mtl-stripes"


@pytest.mark.slow
def test_jsrt_as_a_table_config_gives_the_dedicated_plugins_metrics(phantom, cache_env, tmp_path):
    env = {**cache_env, "MTL_CACHE_DIR": str(tmp_path / "cache")}
    dedicated, out = tmp_path / "dedicated", tmp_path / "table"
    for example, folder in (("jsrt_res_mtnet", dedicated), ("jsrt_table", out)):
        done = mtl("run", str(REPO / "examples" / example), "--data", str(phantom), "--output", str(folder), *FAST,
                   env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    a = json.loads((dedicated / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a["run"]["plugin"].startswith("jsrt_res_mtnet") and b["run"]["plugin"].startswith("table")
    # Both plugins read the images with the core reader and say so in reader_id(): one feature-cache entry, and the
    # table run takes every feature from the dedicated run's extraction. Features extracted again would differ in
    # their last bits wherever the batches or the CPU's kernels differ (up to ~5e-8 in one-thread runs), and
    # training carries that into the 5th digit of the regression errors.
    assert a["run"]["feature_cache"] == {"cache_hits": 0, "cache_misses": 247}
    assert b["run"]["feature_cache"] == {"cache_hits": 247, "cache_misses": 0}
    # The same features, split and seed: every task's metrics and baselines are the same, to the last bit.
    _assert_equal(b["tasks"], a["tasks"])
    for key in ("label_counts", "strata", "delta_m"):
        _assert_equal(b.get(key), a.get(key), key)
    assert (out / "split.json").read_text() == (dedicated / "split.json").read_text()


def _assert_equal(got, expected, where: str = "") -> None:
    """Equal JSON documents; a difference is reported with its path (``/x/metrics/mse``)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _assert_equal(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _assert_equal(g, e, f"{where}[{i}]")
    else:
        assert got == expected or got != got and expected != expected, where  # NaN == NaN here


def test_jsrt_table_and_shapes_pass_the_conformance_check(phantom, cache_env):
    from mtl_core.config import load_config
    from mtl_core.plugins import check_plugin

    jsrt = mtl("plugins", "check", "jsrt_res_mtnet", "--data", str(phantom), env=cache_env)
    assert jsrt.returncode == 0 and jsrt.stdout.rstrip().endswith("passed: 8 checks"), jsrt.stdout
    as_table = check_plugin("table", load_config(REPO / "examples" / "jsrt_table").plugin_options, phantom)
    assert as_table.ok, as_table.format()
    assert "5 target arrays, strata ['size', 'state', 'subtlety']" in as_table.format()  # location: (N, 3)
    options = load_config(REPO / "examples" / "shapes").plugin_options
    shapes = check_plugin("table", options | {"synthetic": options["synthetic"] | {"n": 48}})
    assert shapes.ok and "48 cases from synthetic data" in shapes.format(), shapes.format()


@pytest.mark.slow
def test_shapes_example_runs_offline_out_of_the_box_and_learns(cache_env, tmp_path):
    out = tmp_path / "shapes"
    done = mtl("run", str(REPO / "examples" / "shapes"), "--output", str(out), env=cache_env)  # as it is
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using the synthetic data set of plugin 'table'" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    tasks = metrics["tasks"]
    assert list(tasks) == ["shape", "count", "size"] and tasks["size"]["unit"] == "mm"
    assert tasks["size"]["n"] < tasks["count"]["n"]  # empty images carry no size label
    # not JSRT, and the engine still learns: better than the trivial predictors on held-out images
    assert tasks["shape"]["metrics"]["accuracy"] > tasks["shape"]["baseline"]["accuracy"] + 0.1
    assert tasks["count"]["metrics"]["mae"] < 0.8 * tasks["count"]["baseline"]["mae"]


@pytest.fixture(scope="module")
def guide_site(tmp_path_factory) -> Path:
    """The guide's package, built from a copy (the source stays clean) and installed into a --target folder."""
    root = tmp_path_factory.mktemp("guide")
    source, site = root / "mtl-stripes", root / "site"
    shutil.copytree(GUIDE_PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(source)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return site


@pytest.mark.slow
def test_the_guides_plugin_installs_passes_the_check_runs_and_passes_its_tests(guide_site, cache_env, tmp_path):
    env = {**cache_env, "PYTHONPATH": os.pathsep.join([str(guide_site), os.environ.get("PYTHONPATH", "")])}
    check = mtl("plugins", "check", "stripes", env=env)
    assert check.returncode == 0 and check.stdout.rstrip().endswith("passed: 8 checks"), check.stdout
    assert "plugin 'stripes' from distribution mtl-stripes (mtl_stripes.plugin:StripesPlugin)" in check.stdout
    out = tmp_path / "stripes"
    run = mtl("run", str(GUIDE_PACKAGE / "example"), "--output", str(out), "--set", "train.epochs=8", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(json.loads((out / "metrics.json").read_text())["tasks"]) == ["orientation", "period"]
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                            str(tmp_path), str(GUIDE_PACKAGE / "tests")], capture_output=True, text=True,
                           env={**os.environ, **env}, cwd=tmp_path, timeout=300)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout[-2000:]


def test_the_guide_shows_exactly_the_files_that_ci_runs():
    text = GUIDE.read_text(encoding="utf-8")
    shown = {}
    for block in re.findall(r"```(?:python|toml|yaml)\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        assert first.startswith("# "), f"a code block of {GUIDE.name} does not name its file: {first!r}"
        shown[first[2:]] = block
    files = {str(p.relative_to(GUIDE_PACKAGE)) for p in GUIDE_PACKAGE.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)}
    assert set(shown) == files, "every file of the guide's package is shown in the guide, and nothing else"
    for name, block in shown.items():
        assert block == (GUIDE_PACKAGE / name).read_text(encoding="utf-8"), f"{name} differs from the guide"


def _commands(parser: argparse.ArgumentParser, prefix: str = "mtl"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_the_cli_reference_documents_every_command_and_option():
    from mtl_core.cli import build_parser

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for command, parser in _commands(build_parser()):
        section = re.search(rf"^## {command}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section, f"docs/cli.md has no '## {command}' section"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in section.group(1), f"docs/cli.md: {command} does not document {flag}"
