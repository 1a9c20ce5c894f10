"""Fixtures of the reliability tests: the end-to-end phantom and cache, a runner that can inject faults, and one
finished run on a data folder full of tolerable quirks (which the catalogue, DICOM and pickle tests share)."""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.dicom_files import write_dicom as _write_dicom
from tests.e2e.conftest import EXAMPLE, FAST, REPO, cache_env, phantom  # noqa: F401 - session fixtures reused

# The end-to-end settings with two epochs: these tests are about what happens around training, not its result.
QUICK = [*FAST, "--set", "train.epochs=2"]
RESULTS = ("metrics.json", "predictions.csv", "report.md", "model.safetensors", "model.json", "history.json")
IDENTIFIERS = {"PatientName": "Doe^Jane", "PatientID": "SECRET-ID-4711", "PatientBirthDate": "19440321"}
EXTRA_COLUMN = "referring_ward"
UNLISTED = "JPCXX999.png"


class Mtl:
    """Runs `mtl ARGS` in child processes of two fork servers (``_forkserver.py``), at most two at a time.

    Each command is a process of its own running the real entry point, started without paying the seconds of
    importing torch, timm and the plugin again; ``fault`` arms one of ``_harness.py``'s faults in it.
    """

    def __init__(self, scratch: Path, servers: int = 2) -> None:
        self.scratch, self.count, self.free = scratch, itertools.count(), queue.Queue()
        for _ in range(servers):
            self.free.put(subprocess.Popen([sys.executable, "-m", "tests.reliability._forkserver"], cwd=REPO,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                           env={**os.environ, "OMP_NUM_THREADS": "1"}))

    def __call__(self, *args: str, env: dict[str, str], fault: str | None = None) -> subprocess.CompletedProcess:
        n = next(self.count)
        out, err = self.scratch / f"{n}.out", self.scratch / f"{n}.err"
        server = self.free.get()
        try:
            server.stdin.write(json.dumps({"argv": list(args), "env": env, "fault": fault, "stdout": str(out),
                                           "stderr": str(err)}) + "\n")
            server.stdin.flush()
            reply = server.stdout.readline()
        finally:
            self.free.put(server)
        assert reply, "the fork server died"
        return subprocess.CompletedProcess(["mtl", *args], json.loads(reply)["returncode"], out.read_text(),
                                           err.read_text())

    def close(self) -> None:
        while not self.free.empty():
            server = self.free.get()
            server.stdin.close()
            server.wait(timeout=60)


@pytest.fixture(scope="session")
def mtl(tmp_path_factory):
    runner = Mtl(tmp_path_factory.mktemp("mtl-output"))
    yield runner
    runner.close()


def error_lines(stderr: str) -> list[str]:
    """The ``error: ...`` lines of a run's stderr (progress bars redraw with carriage returns)."""
    return [part.strip() for line in stderr.splitlines() for part in line.split("\r")
            if part.strip().startswith("error:")]


def results_in(out: Path) -> list[str]:
    """The files of a finished run that ``out`` holds."""
    return [name for name in RESULTS if (out / name).exists()]


def write_dicom(path: Path, pixels: np.ndarray | None) -> Path:
    """A DICOM carrying patient identifiers; without pixel data when ``pixels`` is None."""
    _write_dicom(path, np.zeros((8, 8)) if pixels is None else pixels)
    ds = pydicom.dcmread(path)
    for key, value in IDENTIFIERS.items():
        setattr(ds, key, value)
    if pixels is None:
        del ds.PixelData
    ds.save_as(path)
    return path


def _quirky_folder(source: Path, target: Path) -> dict[str, str]:
    """A copy of the phantom with every tolerable quirk; returns quirk -> the study it concerns."""
    shutil.copytree(source, target)
    table = target / "jsrt_metadata.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(f"{line},{EXTRA_COLUMN if i == 0 else 'ward 7'}" for i, line in enumerate(lines))
                     + "\n")
    images = sorted((target / "images").glob("*.png"))
    shutil.copy(images[0], target / "images" / UNLISTED)
    grey = [np.asarray(Image.open(p)) for p in images[1:5]]
    Image.fromarray(np.stack([grey[0]] * 3, axis=-1)).save(images[1])  # 3 channels
    Image.fromarray(grey[1].astype(np.uint16) * 257).save(images[2])  # 16 bit
    Image.fromarray(grey[2]).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(images[3])  # palette
    images[4].unlink()
    write_dicom(images[4].with_suffix(".dcm"), grey[3].astype(np.uint16) * 16)  # 12 bit, with identifiers
    return {"rgb": images[1].name, "16-bit": images[2].name, "palette": images[3].name, "dicom": images[4].name}


@dataclass
class QuirkyRun:
    """A finished run on the quirky folder."""

    data: Path
    out: Path
    studies: dict[str, str]
    done: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def quirky_run(tmp_path_factory, phantom, cache_env, mtl) -> QuirkyRun:  # noqa: F811 - fixtures
    root = tmp_path_factory.mktemp("quirky")
    studies = _quirky_folder(phantom, root / "data")
    done = mtl("run", str(EXAMPLE), "--data", str(root / "data"), "--output", str(root / "out"), *QUICK,
               env=cache_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return QuirkyRun(root / "data", root / "out", studies, done)
