"""The bad-input catalogue: the real `mtl` command, in a subprocess, on every kind of bad input we know of.

For each refused input: exit code 2, no traceback, no stray library warning, one ``error:`` line that names the
culprit (file, line, column, key or value) and says how to fix it, and no result file written. Tolerable quirks
(extra columns, unlisted images, colour, 16-bit and palette images) are accepted, and the ones that are ignored
are said once. The cases of ``tests/e2e/test_bad_input_cli.py`` are reused here with these stricter checks.

Each case is a process of its own running the `mtl` entry point (forked from a pre-loaded server, see
``conftest.Mtl``); the cases are prepared and run two at a time in one module fixture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_core.io import read_image
from tests.e2e import test_bad_input_cli as e2e

from .conftest import (
    EXAMPLE,
    EXTRA_COLUMN,
    IDENTIFIERS,
    QUICK,
    REPO,
    UNLISTED,
    QuirkyRun,
    error_lines,
    results_in,
    write_dicom,
)

TABLE_EXAMPLE = REPO / "examples" / "jsrt_table"  # the JSRT run declared with the generic table plugin


@dataclass
class Workspace:
    """Where one case builds its input; ``run`` gives the arguments of `mtl run` on it."""

    root: Path
    phantom: Path
    quirky: QuirkyRun | None = None

    @property
    def out(self) -> Path:
        return self.root / "out"

    def data(self, edit: Callable[[Path], object] | None = None) -> Path:
        folder = self.root / "data"
        if not folder.exists():
            shutil.copytree(self.phantom, folder)
        if edit:
            edit(folder)
        return folder

    def file(self, name: str, text: str | bytes = "") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def run(self, *extra: str, data: Path | None = None, config: Path = EXAMPLE, out: Path | None = None) -> list[str]:
        return ["run", str(config), "--data", str(data or self.phantom), "--output", str(out or self.out), *QUICK,
                *extra]


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, what the error must name, and the words that say how to fix it."""

    make: Callable[[Workspace], list[str]]
    culprit: tuple[str, ...]
    fix: str
    fault: str | None = None  # a fault of tests/reliability/_harness.py to arm
    needs_run: bool = False  # builds on the session's finished run


def _cell(row: int, column: str, value: str) -> Callable[[Path], None]:
    """Set one cell of the table (row 1 = first data row) to ``value``."""

    def edit(folder: Path) -> None:
        def change(lines: list[str]) -> list[str]:
            header = lines[0].split(",")
            cells = lines[row].split(",")
            cells[header.index(column)] = value
            return [*lines[:row], ",".join(cells), *lines[row + 1:]]

        e2e._edit_csv(folder, change)

    return edit


def _replace_image(index: int, suffix: str, write: Callable[[Path], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        image = sorted((folder / "images").glob("*.png"))[index]
        image.unlink()
        write(image.with_suffix(suffix))

    return edit


REUSED: set[str] = set()  # the cases of tests/e2e/test_bad_input_cli.py taken over here


def _e2e(name: str) -> Callable[[Workspace], list[str]]:
    breaker, _ = e2e.CASES[name]
    REUSED.add(name)
    return lambda ws: ws.run(data=ws.data(breaker))


def _config_with(ws: Workspace, old: str, new: str) -> Path:
    folder = ws.root / "config"
    shutil.copytree(EXAMPLE, folder)
    path = folder / "config.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    return folder


def _weights_of(name: str, path: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm.create_model(name, num_classes=0).state_dict().items()}, str(path))
    return path


def _foreign_weights(ws: Workspace) -> list[str]:
    weights = _weights_of("test_efficientnet", ws.file("effnet.safetensors"))
    return ws.run("--set", f"model.weights={{test_resnet: {weights}, test_efficientnet: random}}")


def _plugin_file(ws: Workspace) -> Path:
    return ws.file("plugins/crashing_plugin.py", "raise RuntimeError('boom while importing')\n")


def _read_only_output(ws: Workspace) -> list[str]:
    ws.out.mkdir(parents=True)
    ws.out.chmod(0o555)
    return ws.run()


def _damaged_ood_check(ws: Workspace) -> list[str]:
    """A copy of the session's run whose out-of-distribution check was cut short, given to `mtl predict`."""
    assert ws.quirky is not None
    run = ws.root / "run"
    shutil.copytree(ws.quirky.out, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "ood.safetensors").write_bytes((run / "ood.safetensors").read_bytes()[:40])
    return ["predict", str(run), str(sorted((ws.phantom / "images").glob("*.png"))[0])]


def _resume_other(ws: Workspace) -> list[str]:
    assert ws.quirky is not None
    return ws.run("--set", "train.lr=0.5", "--resume", data=ws.quirky.data, out=ws.quirky.out)


CASES: dict[str, Case] = {
    # ---- the data folder and its table
    "data folder missing": Case(lambda ws: ws.run(data=ws.root / "nowhere"), ("nowhere", "does not exist"),
                                "pass the folder"),
    "data folder empty": Case(_e2e("empty folder"), ("is empty",), "put a JSRT copy there"),
    "no metadata table": Case(_e2e("no metadata file"), ("jsrt_metadata.csv",), "put"),
    "CSV missing a column": Case(_e2e("missing column"), ("jsrt_metadata.csv", "state"), "expected a header with"),
    "CSV not UTF-8": Case(lambda ws: ws.run(data=ws.data(lambda d: (d / "jsrt_metadata.csv").write_bytes(
        (d / "jsrt_metadata.csv").read_bytes().replace(b"Female", "Femme âgée".encode("latin-1"), 1)))),
        ("jsrt_metadata.csv", "not UTF-8"), "save it as CSV UTF-8"),
    "duplicate study ids": Case(lambda ws: ws.run(data=ws.data(_cell(7, "study_id", "JPCLN003.png"))),
                                ("line 8", "study_id", "JPCLN003.png", "line 4"), "unique"),
    "unknown class value": Case(_e2e("unknown state"), ("jsrt_metadata.csv", "line 2", "state", "evil"),
                                "expected one of benign, malignant, non-nodule"),
    "label out of range": Case(_e2e("unknown subtlety"), ("line 2", "subtlety", "'9'"), "expected an integer 1..5"),
    "non-numeric x": Case(lambda ws: ws.run(data=ws.data(_cell(4, "x", "left"))), ("line 5", "'x'", "'left'"),
                          "expected a pixel coordinate"),
    "non-numeric size": Case(lambda ws: ws.run(data=ws.data(_cell(4, "size", "15mm"))), ("line 5", "'size'", "15mm"),
                             "expected a size in mm"),
    "coordinate outside the image": Case(lambda ws: ws.run(data=ws.data(_cell(4, "y", "5000"))),
                                         ("line 5", "'y'", "5000"), "[0, 2048)"),
    "negative size": Case(lambda ws: ws.run(data=ws.data(_cell(4, "size", "-3"))), ("line 5", "'size'", "'-3'"),
                          "expected a size in mm >= 0"),
    # ---- the images
    "image listed but missing": Case(_e2e("image listed but missing"), ("JPCLN004",), "add the file or remove the row"),
    "truncated PNG": Case(_e2e("truncated image"), ("JPCLN004.png", "truncated"), "re-copy"),
    "zero-byte file": Case(_e2e("zero-byte image"), ("JPCLN004.png", "zero-byte"), "re-copy"),
    "text file named .png": Case(_e2e("text file named png"), ("JPCLN004.png", "not a readable image"), "re-copy"),
    "DICOM without pixel data": Case(lambda ws: ws.run(data=ws.data(_replace_image(5, ".dcm", lambda p: write_dicom(
        p, None)))), ("JPCLN006.dcm", "no pixel data"), "re-export it with its pixel data"),
    ".IMG of the wrong size": Case(lambda ws: ws.run(data=ws.data(_replace_image(5, ".IMG", lambda p: p.write_bytes(
        b"\0" * 1000)))), ("JPCLN006.IMG", "1,000 bytes", "8,388,608"), "re-copy"),
    # ---- the configuration and the plugin
    "unknown config key": Case(lambda ws: ws.run(config=_config_with(ws, "  patience: 30", "  patience: 30\n  "
                                                                     "pateince: 3")),
                               ("config.yaml", "train.pateince"), "check its spelling"),
    "wrong type in config": Case(lambda ws: ws.run("--set", "train.epochs=many"), ("train.epochs", "'many'"),
                                 "valid integer"),
    "unknown plugin": Case(lambda ws: ws.run("--set", "plugin=jsrt_res_mtnt"), ("jsrt_res_mtnt",),
                           "did you mean 'jsrt_res_mtnet'"),
    "plugin that raises on load": Case(lambda ws: ws.run("--set", f"plugin={_plugin_file(ws)}:Crashing"),
                                       ("crashing_plugin.py", "boom while importing"), "fix the plugin"),
    "unknown backbone": Case(lambda ws: ws.run("--set", "model.backbones=[test_resnet,resnet5O]"), ("resnet5O",),
                             "did you mean 'resnet50'"),
    "weights file for another architecture": Case(_foreign_weights, ("effnet.safetensors", "test_resnet"),
                                                  "same architecture"),
    "point task on pooled features": Case(lambda ws: ws.run("--set", "model.pooling=avg"),
                                          ("'location'", "model.pooling", "'avg'"), "set model.pooling to 'map'"),
    "more feature levels than the backbone has": Case(lambda ws: ws.run("--set", "model.map_levels=9"),
                                                      ("test_resnet", "got 9"), "set model.map_levels to at most"),
    "point outside its frame (table plugin)": Case(lambda ws: ws.run(config=TABLE_EXAMPLE, data=ws.data(
        _cell(4, "x", "3000"))), ("line 5", "'x'", "'location'", "3000", "0 to 2048"), "give coordinates in the frame"),
    # ---- the run folder
    "output folder not writable": Case(lambda ws: ws.run(out=ws.file("taken") / "run"), ("taken",), "writable"),
    "output folder read-only": Case(_read_only_output, ("out",), "writable"),
    "disk full while writing": Case(lambda ws: ws.run(), ("model.safetensors", "No space left"), "free space",
                                    fault="disk-full:model.safetensors"),
    "--resume with another config": Case(_resume_other, ("train.lr", "0.0001", "0.5"), "resume with the same",
                                         needs_run=True),
    "damaged out-of-distribution check": Case(_damaged_ood_check, ("ood.safetensors",), "re-run `mtl run`",
                                              needs_run=True),
}
NO_FIX_YET = {  # engine messages that name the culprit but not yet the fix: see the reasons
}
ROOT_CAN_WRITE = hasattr(os, "geteuid") and os.geteuid() == 0


def _params():
    for name in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=NO_FIX_YET[name])] if name in NO_FIX_YET else []
        if name == "output folder read-only" and ROOT_CAN_WRITE:
            marks.append(pytest.mark.skip(reason="root writes into read-only folders"))
        yield pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, phantom, cache_env, mtl):
    """Every selected case, prepared here and run two at a time: name -> (workspace, finished process)."""
    wanted = [item.callspec.params["case"] for item in request.session.items if item.module is request.module
              and hasattr(item, "callspec") and "case" in item.callspec.params and not item.get_closest_marker("skip")]
    quirky = request.getfixturevalue("quirky_run") if any(CASES[n].needs_run for n in wanted) else None
    prepared = {}
    for name in dict.fromkeys(wanted):
        ws = Workspace(tmp_path_factory.mktemp("case"), phantom, quirky)
        prepared[name] = (ws, CASES[name].make(ws))
    marks = {name: (ws.quirky.out / "metrics.json").stat().st_mtime_ns for name, (ws, _) in prepared.items()
             if CASES[name].needs_run}

    def launch(name):
        ws, argv = prepared[name]
        return name, (ws, mtl(*argv, env=cache_env, fault=CASES[name].fault), marks.get(name))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(launch, prepared))


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input_is_refused_with_one_clear_line(case, outcomes):
    spec, (ws, done, mark) = CASES[case], outcomes[case]
    stderr = done.stderr
    assert done.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr and not re.search(r"\w+Warning: ", stderr), stderr[-2000:]
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr[-2000:]
    assert stderr.rstrip().endswith(errors[0]), "nothing after the error line"
    for part in spec.culprit:
        assert part.lower() in errors[0].lower(), (part, errors[0])
    assert not any(v in stderr + done.stdout for v in IDENTIFIERS.values())
    if spec.needs_run:  # the existing run is untouched
        assert (ws.quirky.out / "metrics.json").stat().st_mtime_ns == mark
    else:
        assert results_in(ws.out) == []
    assert spec.fix.lower() in errors[0].lower(), f"no fix ({spec.fix!r}) in: {errors[0]}"


def test_the_catalogue_covers_the_end_to_end_cases():
    assert len(CASES) >= 25
    assert set(e2e.CASES) == REUSED, "a new case in tests/e2e/test_bad_input_cli.py belongs in the catalogue too"


# ---- tolerated input: the quirky run of conftest.py ------------------------------------------------------------


def _lines_naming(stderr: str, *words: str) -> list[str]:
    return [line for line in stderr.splitlines() if all(w.lower() in line.lower() for w in words)]


def test_extra_column_is_ignored_and_said_once(quirky_run):
    assert len(_lines_naming(quirky_run.done.stderr, EXTRA_COLUMN, "ignor")) == 1, quirky_run.done.stderr


def test_unlisted_image_is_ignored_and_said_once(quirky_run):
    assert len(_lines_naming(quirky_run.done.stderr, "not listed", "ignored")) == 1, quirky_run.done.stderr
    split = json.loads((quirky_run.out / "split.json").read_text())
    used = {study for part in (split if isinstance(split, list) else [split]) for key in ("train", "val", "test")
            for study in part.get(key, [])}
    assert UNLISTED not in used and len(used) == 247


@pytest.mark.parametrize("quirk", ["rgb", "16-bit", "palette", "dicom"])
def test_colour_16_bit_palette_and_dicom_images_are_converted(quirk, quirky_run, phantom):
    study = quirky_run.studies[quirk]
    assert not _lines_naming(quirky_run.done.stderr, Path(study).stem)  # nothing to say about it
    (converted,) = (quirky_run.data / "images").glob(f"{Path(study).stem}.*")
    original = np.asarray(Image.open(phantom / "images" / study), dtype=np.float64) / 255
    assert np.abs(read_image(converted) - original).max() < 0.01  # the same grey levels as the 8-bit original
    split = json.loads((quirky_run.out / "split.json").read_text())
    parts = split if isinstance(split, list) else [split]
    assert any(study in part.get(key, []) for part in parts for key in ("train", "val", "test"))
