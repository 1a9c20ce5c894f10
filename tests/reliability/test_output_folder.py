"""The output folder through the real CLI: `mtl run --output X` writes only into a folder that is new, empty or
its own (io/output_folder.py), never follows a symbolic link out of it, never deletes what it did not write, holds
it alone while it runs, and a re-run into a finished folder stops looking finished before it changes anything.
Each refusal exits 2 with one line and leaves the folder (and the earlier results in it) as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from .conftest import EXAMPLE, QUICK, error_lines, results_in

MARKER, LOCK = ".mtl-folder.json", ".mtl-folder.lock"


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed): its kind and content digest."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"link -> {path.readlink()}"
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "folder"
    return found


def _refused(done, *words: str) -> str:
    """The one error line of a refused command (exit 2, no traceback), checked to contain ``words``."""
    lines = error_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def raced(tmp_path_factory, phantom, cache_env, mtl):
    """Two `mtl run` into one new --output at the same time: (folder, the two results)."""
    out = tmp_path_factory.mktemp("race") / "run"
    run = ["run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *QUICK]
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: mtl(*run, env=cache_env), range(2)))
    return out, both


def test_two_runs_into_one_output_one_refuses_and_the_folder_is_consistent(raced, phantom, cache_env, mtl, tmp_path):
    out, both = raced
    codes = sorted(done.returncode for done in both)
    assert codes == [0, 2], [done.stderr[-1500:] for done in both]
    _refused(next(done for done in both if done.returncode == 2), str(out), "in use by another mtl process")
    assert results_in(out) == ["metrics.json", "predictions.csv", "report.md", "model.safetensors", "model.json",
                               "history.json"]
    assert not list(out.rglob("*.tmp")) and not list((out / "checkpoints").glob("*.safetensors"))
    # The model in the folder is the one its predictions.csv and metrics.json were made with.
    frame = pd.read_csv(out / "predictions.csv").head(3)
    images = [str(phantom / "images" / case) for case in frame["id"]]
    done = mtl("predict", str(out), *images, "--format", "json", env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    for row, (_, case) in zip(json.loads(done.stdout), frame.iterrows(), strict=True):
        assert row["state"]["prediction"] == case["state_pred"]
        assert abs(row["location"]["x"] - case["x_pred"]) < 2 and abs(row["location"]["y"] - case["y_pred"]) < 2
    assert json.loads((out / MARKER).read_text())["written_by"] == "mtl run"


def test_a_run_into_a_folder_in_use_refuses_at_once_and_changes_nothing(raced, phantom, cache_env, mtl, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(raced[0], out)
    from mtl_core.io import claim_output  # the owner of output folders, as another process's run holds one

    with claim_output(out, "mtl run", resume=True):  # another process's run holds the folder
        before = _snapshot(out)
        done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *QUICK, env=cache_env)
    _refused(done, "in use by another mtl process")
    assert _snapshot(out) == before  # the earlier results are intact


def test_a_folder_that_is_not_a_run_is_refused_then_overwritten_without_losing_its_files(
        phantom, cache_env, mtl, tmp_path):
    out, outside = tmp_path / "mine", tmp_path / "outside"
    (out / "checkpoints").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "checkpoints" / "weights.safetensors").write_bytes(b"my weights")
    (out / "checkpoints" / "plan.txt").write_text("my plan")
    outside.mkdir()
    before, around = _snapshot(out), _snapshot(tmp_path)
    run = ["run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *QUICK]
    _refused(mtl(*run, env=cache_env), str(out), "--overwrite")
    assert _snapshot(out) == before and _snapshot(tmp_path) == around  # nothing deleted, nothing written anywhere
    done = mtl(*run, "--resume", env=cache_env)  # --resume is no way in either
    _refused(done, "--overwrite")
    assert _snapshot(tmp_path) == around
    weights = _weights_of("test_resnet", outside / "resnet.safetensors")  # a backbone from a weights file
    around = _snapshot(tmp_path)
    done = mtl(*run, "--overwrite", "--set", f"model.weights={{test_resnet: {weights}, test_efficientnet: random}}",
               env=cache_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(results_in(out)) == 6 and (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoints" / "weights.safetensors").read_bytes() == b"my weights"  # not ours: kept
    assert (out / "checkpoints" / "plan.txt").read_text() == "my plan"
    assert set(_snapshot(tmp_path)) - {f"mine/{k}" for k in _snapshot(out)} == set(around) - {
        f"mine/{k}" for k in before}  # nothing written outside --output
    weights.unlink()  # predict reads the run's backbone tensors from model.safetensors, never the file it names
    image = str(phantom / "images" / pd.read_csv(out / "predictions.csv")["id"][0])
    assert mtl("predict", str(out), image, "--format", "json", env=cache_env).returncode == 0


def _weights_of(name: str, path: Path) -> Path:
    import timm  # lazy: only this test makes a weights file
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm.create_model(name, num_classes=0).state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("link", ["checkpoints", "metrics.json", "figures"])
def test_a_symlink_in_the_run_folder_is_refused_even_with_overwrite(link, raced, phantom, cache_env, mtl, tmp_path):
    out, target = tmp_path / "run", tmp_path / "elsewhere"
    shutil.copytree(raced[0], out)
    target.mkdir()
    (target / "final.safetensors").write_bytes(b"someone's weights")
    (target / "run.json").write_text('{"format": "mtl-resume/1"}')
    (target / "data.json").write_text("{}")
    victim = out / link
    if victim.is_dir():
        shutil.rmtree(victim)
    else:
        victim.unlink(missing_ok=True)
    victim.symlink_to(target if link != "metrics.json" else target / "data.json")
    before, elsewhere = _snapshot(out), _snapshot(target)
    for extra in ([], ["--overwrite"], ["--resume"]):
        done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *QUICK, *extra, env=cache_env)
        _refused(done, str(victim), "symbolic link")
        assert _snapshot(target) == elsewhere and _snapshot(out) == before


def test_an_interrupted_rerun_into_a_finished_folder_no_longer_looks_finished(raced, phantom, cache_env, mtl,
                                                                             tmp_path):
    out = tmp_path / "run"
    shutil.copytree(raced[0], out)
    (out / "notes.txt").write_text("kept")
    run = ["run", str(EXAMPLE), "--data", str(phantom), "--output", str(out), *QUICK]
    done = mtl(*run, env=cache_env, fault="kill-batch:1:0")  # killed in its first epoch
    assert done.returncode < 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert results_in(out) == [] and not list((out / "figures").glob("*.png"))  # no mixed, finished-looking folder
    assert (out / "notes.txt").read_text() == "kept"
    _refused(mtl("predict", str(out), str(next((phantom / "images").iterdir())), env=cache_env), str(out))


def test_predict_reads_no_weights_file_that_model_json_names_outside_the_run(raced, phantom, cache_env, mtl,
                                                                           tmp_path):
    out, secret = tmp_path / "foreign", tmp_path / "secret.safetensors"
    shutil.copytree(raced[0], out)
    secret.write_bytes(b"not to be read")
    schema = json.loads((out / "model.json").read_text())
    schema["model"]["weights"] = {name: str(secret) for name in schema["model"]["weights"]}
    (out / "model.json").write_text(json.dumps(schema))
    image = str(next((phantom / "images").iterdir()))
    _refused(mtl("predict", str(out), image, env=cache_env), str(secret), "run folder")
    (out / "model.json").write_text(json.dumps(json.loads((raced[0] / "model.json").read_text())))
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").symlink_to(raced[0] / "model.safetensors")
    _refused(mtl("predict", str(out), image, env=cache_env), "symbolic link")


def test_compare_refuses_a_folder_not_its_own_before_training(raced, phantom, cache_env, mtl, tmp_path):
    mine, run = tmp_path / "mine", tmp_path / "run"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    shutil.copytree(raced[0], run)
    compare = ["compare", str(EXAMPLE), "--backbones", "test_resnet", "--allow-random", "--data", str(phantom),
               *QUICK]
    for out, words in ((mine, ("is not empty", "--overwrite")), (run, ("holds the output of mtl run", "--overwrite"))):
        before = _snapshot(out)
        _refused(mtl(*compare, "--output", str(out), env=cache_env), str(out), *words)
        assert _snapshot(out) == before
