"""Hostile inputs through the real `mtl` command: decompression bombs, malformed DICOM tags, and text built to
break the files the engine writes.

Refused inputs (a PNG of 100 megapixels in 12 KB, a deflated DICOM of 280 KB that inflates to 288 MB, a DICOM
declaring 60000 x 60000 pixels, a DICOM with a garbage RescaleSlope, a limit variable set to nonsense) exit 2 with
one ``error:`` line naming the file or variable, the limit and how to raise it; no traceback; no result in
``--output``; nothing changed outside it (the data folder and an earlier run's folder beside it are byte-for-byte
as they were). Tolerated input (ids and class names that are spreadsheet formulas, stratum values with newlines
and pipes, class names and units with ``$``) trains, and every file it writes keeps its structure.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from mtl_core.report.html import _cells
from tests.core.io.test_image_limits import deflated_bomb, png_bomb

from .conftest import EXAMPLE, IDENTIFIERS, QUICK, REPO, error_lines, results_in, write_dicom


def _swap_image(folder: Path, suffix: str, write: Callable[[Path], object], index: int = 5) -> str:
    """Replace the ``index``-th image of a phantom copy by what ``write`` makes; returns the new file's name."""
    image = sorted((folder / "images").glob("*.png"))[index]
    image.unlink()
    target = image.with_suffix(suffix)
    write(target)
    return target.name


def _big_dicom(path: Path) -> None:
    write_dicom(path, np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 60000  # 3.6 gigapixels declared; 128 bytes of pixel data
    ds.save_as(path)


def _garbage_slope(path: Path) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    write_dicom(path, np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    junk = b"9" * 4000 + b"e9999x"
    ds[Tag(0x0028, 0x1053)] = RawDataElement(Tag(0x0028, 0x1053), "DS", len(junk), junk, 0, False, True)
    ds.save_as(path)


@dataclass(frozen=True)
class Case:
    """A refused input: how to put it in the data folder (returns the culprit's name), the environment, and
    the words the error line must hold."""

    make: Callable[[Path], str]
    says: tuple[str, ...]
    env: dict[str, str] | None = None


CASES = {
    "PNG decompression bomb": Case(lambda d: _swap_image(d, ".png", lambda p: png_bomb(p, 10_000, 10_000)),
                                   ("10000 x 10000", "67,108,864 pixels", "MTL_MAX_IMAGE_PIXELS=")),
    "deflated DICOM bomb": Case(lambda d: _swap_image(d, ".dcm", lambda p: deflated_bomb(p, 12_000)),
                                ("deflated", "268,435,456 bytes", "MTL_MAX_DICOM_BYTES=")),
    "DICOM declaring 60000 x 60000": Case(lambda d: _swap_image(d, ".dcm", _big_dicom),
                                          ("declares 60000 x 60000", "MTL_MAX_IMAGE_PIXELS=")),
    "garbage RescaleSlope": Case(lambda d: _swap_image(d, ".dcm", _garbage_slope),
                                 ("malformed RescaleSlope tag", "fix or remove the tag")),
    "pixel limit lower than the images": Case(lambda d: sorted((d / "images").glob("*.png"))[0].name,
                                              ("64 x 64", "limit of 1,000 pixels", "MTL_MAX_IMAGE_PIXELS=4096"),
                                              env={"MTL_MAX_IMAGE_PIXELS": "1000"}),
    "limit variable set to nonsense": Case(lambda d: "MTL_MAX_IMAGE_PIXELS", ("'lots'", "positive whole number"),
                                           env={"MTL_MAX_IMAGE_PIXELS": "lots"}),
}


def _snapshot(root: Path, skip: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, phantom, cache_env, mtl):
    """Every case prepared in a folder of its own (a phantom copy, an earlier run's folder) and run two at a time."""
    prepared = {}
    for name, case in CASES.items():
        root = tmp_path_factory.mktemp("hostile")
        shutil.copytree(phantom, root / "data")
        culprit = case.make(root / "data")
        earlier = root / "earlier-run"
        earlier.mkdir()
        (earlier / "metrics.json").write_text('{"tasks": {}}\n')
        (earlier / "predictions.csv").write_text("id,x\na,1\n")
        before = _snapshot(root, root / "out")
        argv = ["run", str(EXAMPLE), "--data", str(root / "data"), "--output", str(root / "out"), *QUICK]
        prepared[name] = (root, culprit, before, argv)

    def launch(name):
        # each case has a cache of its own: images another test's run already put in a shared feature cache are
        # never decoded again, so a pixel limit would never be met there (whatever the order of the tests)
        root, culprit, before, argv = prepared[name]
        own = {"MTL_CACHE_DIR": str(tmp_path_factory.mktemp("hostile-cache"))}
        return name, (root, culprit, before, mtl(*argv, env={**cache_env, **own, **(CASES[name].env or {})}))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(launch, prepared))


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_is_refused_with_one_line_and_touches_nothing(case, outcomes):
    root, culprit, before, done = outcomes[case]
    stderr = done.stderr
    assert done.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr and not re.search(r"\w+Warning: ", stderr), stderr[-2000:]
    errors = error_lines(stderr)
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-2000:]
    assert len(errors[0]) < 600, errors[0]  # no tag value, no megabytes of anything
    for part in (culprit, *CASES[case].says):
        assert part in errors[0], (part, errors[0])
    assert "9999" not in stderr and not any(v in stderr + done.stdout for v in IDENTIFIERS.values())
    assert results_in(root / "out") == []
    assert _snapshot(root, root / "out") == before  # the data and the earlier run, byte for byte


# ---- text built to break the files a run writes ----------------------------------------------------------------

FORMULA_IDS = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1:A9)", "\t=1"]
CLASSES = {"none": "none", "disc": "$x^$ disc", "square": "square | box", "triangle": "=triangle"}  # $x^$: bad TeX
WARDS = ["east\n| wing | x |", "west|north", "$5 - $10", "ward\r\n# 7"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, cache_env, mtl):
    """A run of the table plugin on shapes whose ids, class names, units and stratum values are hostile."""
    from mtl_core.plugins.table.options import ShapesOptions
    from mtl_core.plugins.table.shapes import write_shapes

    root = tmp_path_factory.mktemp("hostile-text")
    data = write_shapes(root / "data", ShapesOptions(n=96, size=32, seed=0))
    table = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)
    table["id"] = [f"{FORMULA_IDS[i % len(FORMULA_IDS)]}{i}" for i in range(len(table))]
    table["ward"] = [WARDS[i % len(WARDS)] for i in range(len(table))]
    table.to_csv(data / "labels.csv", index=False)
    config = yaml.safe_load((REPO / "examples" / "shapes" / "config.yaml").read_text())
    options = config["plugin_options"]
    options.pop("synthetic")
    options["strata"] = ["ward"]
    options["tasks"]["shape"] |= {"classes": list(CLASSES.values()), "mapping": CLASSES}
    options["tasks"]["count"]["unit"] = "$\\frac{$ per image"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    done = mtl("run", str(root / "config.yaml"), "--data", str(data), "--output", str(root / "out"), "--set",
               "data.image_size=32", "--set", "train.epochs=2", env=cache_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out", table


def test_formula_ids_and_class_names_are_neutralised_in_predictions_csv(hostile_run):
    out, table = hostile_run
    text = (out / "predictions.csv").read_text()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start like a formula
    back = pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False)
    assert set(back["id"]) <= {"'" + i.strip() for i in table["id"]}  # ids (stripped by the table), prefixed
    assert "'=triangle" in set(back["shape_true"]) | set(back["shape_pred"])
    assert len(back) == len(rows) - 1  # no row split by a tab, CR or newline


def test_stratum_values_keep_the_report_structure(hostile_run):
    out, _ = hostile_run
    report = (out / "report.md").read_text()
    section = report.split("### By ward")[1].split("\n\n")[1].splitlines()
    header, rows = _cells(section[0]), [_cells(line) for line in section[2:]]
    assert len(rows) == len(WARDS) and all(len(row) == len(header) for row in rows)
    assert len({row[0] for row in rows}) == len(WARDS)
    for line in report.splitlines():
        assert not line.startswith("| wing") and not line.startswith("# 7")
    html = (out / "report.html").read_text()
    assert html.count("<h3>") == report.count("\n### ")


def test_dollar_signs_do_not_break_the_figures(hostile_run):
    out, _ = hostile_run
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"confusion_shape.png", "scatter_count.png"} <= figures
