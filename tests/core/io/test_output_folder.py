"""Tests for mtl_core.io.output_folder, the one owner of "is this output folder ours and free": a marker, a lock,
refusal without overwrite, never a link, never a file we did not write, the finished mark removed first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_core.errors import RunError
from mtl_core.io import check_output, claim_output, read_run_model, run_file, write_run_model
from mtl_core.io.output_folder import LOCK, MARKER, OUTPUT_FORMAT, owner

RUN = "mtl run"
RESULTS = ("metrics.json", "predictions.csv", "model.json", "model.safetensors", "report.md", "split.json")


def _finished(folder: Path) -> Path:
    with claim_output(folder, RUN):
        for name in RESULTS:
            (folder / name).write_text(name)
        (folder / "figures").mkdir()
        (folder / "figures" / "curves.png").write_bytes(b"png")
    return folder


def test_a_new_folder_is_created_marked_and_locked(tmp_path):
    folder = tmp_path / "a" / "run"
    with claim_output(folder, RUN) as claimed:
        assert claimed.path == folder and folder.is_dir()
        marker = json.loads((folder / MARKER).read_text())
        assert marker["format"] == OUTPUT_FORMAT and marker["written_by"] == RUN and "mtl_core" in marker
        assert (folder / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(RunError, match=rf"^{folder} is in use by another mtl process \(pid {os.getpid()}\)"):
            claim_output(folder, RUN, resume=True)
    claim_output(folder, RUN).release()  # released: free again
    assert owner(folder) == RUN and sorted(p.name for p in folder.iterdir()) == [MARKER, LOCK]


def test_the_lock_holds_against_another_process(tmp_path):
    folder = tmp_path / "run"
    code = (f"from mtl_core.io import claim_output\nfrom mtl_core.errors import RunError\n"
            f"try:\n    claim_output({str(folder)!r}, 'mtl run')\nexcept RunError as e:\n    print(e)")
    with claim_output(folder, RUN):
        said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "is in use by another mtl process" in said and said.count("\n") == 1
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == ""


def test_an_empty_folder_or_one_holding_only_the_lock_is_ours(tmp_path):
    (tmp_path / "empty").mkdir()
    claim_output(tmp_path / "empty", RUN).release()
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / LOCK).write_text("123\n")  # a claim refused (or killed) before its marker
    claim_output(tmp_path / "locked", RUN).release()


def test_a_folder_of_other_files_is_refused_untouched_then_overwritten_keeping_them(tmp_path):
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "metrics.json").write_text("my metrics")
    (folder / "checkpoints" / "x.safetensors").write_bytes(b"mine")
    with pytest.raises(RunError, match=r"is not empty and was not written by mtl run \(3 entries, e\.g\. "
                                       r"'checkpoints'\); .*--overwrite"):
        claim_output(folder, RUN)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoints", "metrics.json", "notes.txt"]  # no lock file
    claim_output(folder, RUN, overwrite=True).release()
    assert (folder / "notes.txt").read_text() == "mine" and not (folder / "metrics.json").exists()
    assert (folder / "checkpoints" / "x.safetensors").read_bytes() == b"mine" and owner(folder) == RUN


def test_another_writers_folder_is_refused(tmp_path):
    folder = tmp_path / "saved"
    claim_output(folder, "mtl_core.save_run").release()
    (folder / "model.json").write_text("{}")
    with pytest.raises(RunError, match=r"holds the output of mtl_core.save_run, not of mtl run; .*--overwrite"):
        check_output(folder, RUN)
    with pytest.raises(RunError, match="is a file"):
        check_output(folder / "model.json", RUN)


def test_a_fresh_claim_removes_the_finished_mark_first_and_only_our_files(tmp_path, monkeypatch):
    folder = _finished(tmp_path / "run")
    (folder / "notes.txt").write_text("kept")
    (folder / "figures" / "mine.svg").write_text("kept")
    (folder / ".metrics.json.abc.tmp").write_text("torn")
    removed = []
    unlink = Path.unlink
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (removed.append(self.name), unlink(self, *a, **k)))
    claim_output(folder, RUN).release()
    assert removed[0] == "metrics.json"  # an interrupted re-run never leaves a folder that looks finished
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, LOCK, "figures", "notes.txt"]
    assert [p.name for p in (folder / "figures").iterdir()] == ["mine.svg"]


def test_a_claim_to_resume_deletes_nothing(tmp_path):
    folder = _finished(tmp_path / "run")
    claim_output(folder, RUN, resume=True).release()
    assert all((folder / name).read_text() == name for name in RESULTS)


@pytest.mark.parametrize("name", ["checkpoints", "figures", "metrics.json", "model.safetensors", MARKER, LOCK])
def test_a_link_where_we_write_is_refused_even_with_overwrite(tmp_path, name):
    folder, target = _finished(tmp_path / "run"), tmp_path / "elsewhere"
    target.mkdir()
    (target / "final.safetensors").write_bytes(b"theirs")
    victim = folder / name
    if victim.is_dir():
        for inner in victim.iterdir():
            inner.unlink()
        victim.rmdir()
    else:
        victim.unlink(missing_ok=True)
    victim.symlink_to(target if name in ("checkpoints", "figures") else target / "final.safetensors")
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunError, match=rf"^{victim} is a symbolic link \(to {target}"):
            claim_output(folder, RUN, **kwargs)
    assert (target / "final.safetensors").read_bytes() == b"theirs"
    assert (folder / "predictions.csv").read_text() == "predictions.csv"  # the earlier results are intact


def test_a_folder_of_an_earlier_version_is_recognised(tmp_path):
    run, saved, compared = tmp_path / "run", tmp_path / "saved", tmp_path / "compared"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "run.json").write_text(json.dumps({"format": "mtl-resume/1"}))
    saved.mkdir()
    (saved / "model.json").write_text(json.dumps({"saved_by": "mtl_core.save_run"}))
    compared.mkdir()
    (compared / "compare.md").write_text("# Comparison")
    assert (owner(run), owner(saved), owner(compared)) == (RUN, "mtl_core.save_run", "mtl compare")
    (saved / MARKER).write_text(json.dumps({"format": "mtl-output/9", "written_by": "mtl run"}))
    assert owner(saved) is None  # a marker of another format is not read


def test_run_files_are_read_from_the_run_folder_only(tmp_path):
    folder, outside = tmp_path / "run", tmp_path / "outside"
    write_run_model(outside, {"image_size": 32}, {})
    folder.mkdir()
    (folder / "model.json").symlink_to(outside / "model.json")
    (folder / "model.safetensors").write_bytes((outside / "model.safetensors").read_bytes())
    with pytest.raises(RunError, match=r"model.json is a symbolic link out of its run folder"):
        read_run_model(folder)
    (folder / "model.json").unlink()
    (folder / "copy.json").write_bytes((outside / "model.json").read_bytes())
    (folder / "model.json").symlink_to("copy.json")  # a link inside the folder is harmless
    assert read_run_model(folder).schema["image_size"] == 32
    assert run_file(folder, "ood.safetensors") == folder / "ood.safetensors"


def test_a_folder_another_claim_is_making_its_own_is_in_use_not_foreign(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with claim_output(folder, RUN, overwrite=True):
        (folder / MARKER).unlink()  # as while the holder is still writing its marker
        with pytest.raises(RunError, match="in use by another mtl process"):
            claim_output(folder, RUN)
    (folder / "notes.txt").unlink()
    (folder / f".{MARKER}.x1.tmp").write_text("{")  # a marker write killed before its rename: not a foreign file
    claim_output(folder, RUN).release()
