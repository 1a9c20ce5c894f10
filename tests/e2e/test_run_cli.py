"""`mtl run`, `mtl predict`, `mtl plugins`, `mtl validate` driven as a user would, on a small phantom."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ..dicom_files import write_dicom
from .conftest import EXAMPLE, FAST, mtl

TASKS = ["subtlety", "state", "position", "diagnosis", "location"]  # location: the nodule's x, y and size
POINT = ["x", "y", "size"]  # the point task's components, reported like regression tasks
KEYS = {"classification": ("accuracy", "f1_macro"), "regression": ("mse", "mae"), "point": ("distance", "hit_rate")}


def test_run_writes_all_outputs(finished_run):
    out, done = finished_run
    for name in ("config.yaml", "metrics.json", "predictions.csv", "report.md", "model.safetensors", "model.json",
                 "history.json", "ood.safetensors"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["tasks"]) == sorted(TASKS + POINT)
    assert metrics["tasks"]["location"]["kind"] == "point"
    for name, task in metrics["tasks"].items():
        assert task["kind"] == ("regression" if name in POINT else "point" if name == "location" else
                                "classification"), name
        for key in KEYS[task["kind"]]:
            assert key in task["metrics"] and key in task["baseline"], (name, key)
        assert task["n"] > 0
    assert all(metrics["tasks"][name]["part_of"] == "location" for name in POINT)
    assert (metrics["tasks"]["x"]["unit"], metrics["tasks"]["size"]["unit"]) == ("px", "mm")
    # held-out label counts: non-nodules carry no nodule labels, so nodule tasks have fewer labels than state
    assert metrics["tasks"]["location"]["n"] == metrics["tasks"]["x"]["n"] < metrics["tasks"]["state"]["n"]
    assert metrics["run"]["pooling"].startswith("map 14x14")  # the example's feature maps, on the tiny backbones
    assert "RANDOM INITIALISATION" in (out / "report.md").read_text()
    assert "subtlety" in done.stdout and "baseline" in done.stdout


def test_report_shows_where_the_model_looked_for_every_task(finished_run):
    out, _ = finished_run  # run with evaluation.saliency_images=2
    for task in TASKS:  # Grad-CAM of the four classification tasks, the heatmap of the point task
        overlays = sorted((out / "figures").glob(f"saliency_{task}_*.png"))
        assert len(overlays) == 2, task
        assert all(min(Image.open(path).size) >= 64 for path in overlays), task  # at least the image size
    html = (out / "report.html").read_text()
    assert "Where the model looked" in html
    assert html.split("Where the model looked", 1)[1].count("<img") == 2 * len(TASKS)  # beside prediction, truth


def test_predictions_csv_has_truth_and_prediction_per_task(finished_run):
    out, _ = finished_run
    frame = pd.read_csv(out / "predictions.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(frame) == metrics["tasks"]["state"]["n"]
    for task in TASKS[:-1] + POINT:
        assert f"{task}_true" in frame and f"{task}_pred" in frame
    non_nodule = frame["state_true"] == "non-nodule"
    assert frame.loc[non_nodule, ["x_true", "y_true", "size_true"]].isna().all().all()
    assert frame.loc[~non_nodule, ["x_true", "y_true", "size_true"]].notna().all().all()
    assert frame[["x_pred", "y_pred"]].stack().between(0, 2048).all()  # every image gets a point in the frame
    assert (frame["size_pred"] >= 0).all() and frame["location_presence"].between(0, 1).all()
    assert set(frame["state_pred"]) <= {"benign", "malignant", "non-nodule"}


def test_predict_png_and_dicom_print_all_tasks(finished_run, phantom, tmp_path, cache_env):
    out, _ = finished_run
    png = sorted((phantom / "images").glob("*.png"))[0]
    dcm = tmp_path / "case.dcm"
    write_dicom(dcm, (np.asarray(Image.open(png), dtype=np.float64) / 255 * 4095).astype(np.uint16),
                PatientName="Doe^Jane", PatientID="SECRET-ID-123")
    done = mtl("predict", str(out), str(png), str(dcm), "--format", "json", env=cache_env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 2
    for row in rows:
        for task in TASKS[:-1]:
            assert "prediction" in row[task]
        assert row["state"]["prediction"] in ("benign", "malignant", "non-nodule")
        assert 0.0 <= row["state"]["probability"] <= 1.0
        location = row["location"]
        assert 0 <= location["x"] <= 2048 and 0 <= location["y"] <= 2048 and location["size"] >= 0
        assert location["unit"] == "px" and location["size_unit"] == "mm" and 0 <= location["presence"] <= 1
        assert row["out_of_distribution"]["score"] >= 0 and isinstance(row["out_of_distribution"]["flagged"], bool)
    assert "SECRET-ID-123" not in done.stdout and "Doe" not in done.stdout
    csv = mtl("predict", str(out), str(png), env=cache_env)  # not a terminal: CSV, one number per column
    assert csv.returncode == 0
    header, line = csv.stdout.splitlines()
    assert header.split(",")[1:] == [f"{t}{s}" for t in TASKS[:-1] for s in ("", "_prob")] + [
        *POINT, "location_presence", "out_of_distribution", "out_of_distribution_score"]
    assert re.fullmatch(r"[^,]+(,[^,]+,0\.\d+){4}(,[\d.]+){3},0\.\d+,[01],[\d.]+", line), line


def test_predict_on_training_image_matches_run_predictions(finished_run, phantom, cache_env):
    """The saved model applied to a raw image reproduces the prediction made on cached features."""
    out, _ = finished_run
    frame = pd.read_csv(out / "predictions.csv")
    case = frame.iloc[0]
    image = phantom / "images" / case["id"]
    done = mtl("predict", str(out), str(image), "--format", "json", env=cache_env)
    row = json.loads(done.stdout)[0]
    assert row["state"]["prediction"] == case["state_pred"]
    assert row["subtlety"]["prediction"] == case["subtlety_pred"]
    # rounded to 0.1 px (0.1 mm), from float32 features instead of the cache's float16 ones: ~0.1 px apart here
    location = row["location"]
    assert abs(location["x"] - case["x_pred"]) < 2 and abs(location["y"] - case["y_pred"]) < 2
    assert abs(location["size"] - case["size_pred"]) < 0.5


def test_plugins_lists_jsrt():
    done = mtl("plugins")
    assert done.returncode == 0
    assert "jsrt_res_mtnet" in done.stdout and "subtlety" in done.stdout


def test_validate_accepts_example_and_rejects_typo():
    assert mtl("validate", str(EXAMPLE)).returncode == 0
    bad = mtl("validate", str(EXAMPLE), "--set", "train.epoch=3")
    assert bad.returncode == 2
    assert "train.epoch" in bad.stderr and "Traceback" not in bad.stderr


def test_warm_rerun_hits_the_feature_cache_and_reproduces_the_cold_run(phantom, tmp_path):
    """Self-contained: a private cache, filled by a cold run, then served to a warm one (two training epochs each:
    extraction is what is measured)."""
    env = {"MTL_CACHE_DIR": str(tmp_path / "cache"), "MTL_WEIGHTS_DIR": ""}
    quick = [*FAST, "--set", "train.epochs=2"]
    runs = {}
    for name in ("cold", "warm"):
        done = mtl("run", str(EXAMPLE), "--data", str(phantom), "--output", str(tmp_path / name), *quick, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    images = len(list((phantom / "images").glob("*.png")))
    assert runs["cold"]["run"]["feature_cache"] == {"cache_hits": 0, "cache_misses": images}
    assert runs["warm"]["run"]["feature_cache"] == {"cache_hits": images, "cache_misses": 0}
    for name, task in runs["cold"]["tasks"].items():  # the cached features are the ones the cold run trained on
        warm = runs["warm"]["tasks"][name]["metrics"]
        assert warm == pytest.approx(task["metrics"], rel=1e-6, abs=1e-9, nan_ok=True), name


def test_predict_reads_original_img_files_as_the_same_pixels_in_png(finished_run, phantom, tmp_path, cache_env):
    from jsrt_res_mtnet.raw_img import write_jsrt_img

    out, _ = finished_run
    png = sorted((phantom / "images").glob("*.png"))[0]
    big = Image.open(png).convert("L").resize((2048, 2048))  # the original's 2048-pixel frame, 8-bit
    same = tmp_path / "JPCLN001.png"
    big.save(same)
    raw = tmp_path / "JPCLN001.IMG"
    write_jsrt_img(raw, np.asarray(big, dtype=np.float32) / 255)  # the same grey levels, to 12-bit precision
    done = mtl("predict", str(out), str(raw), str(same), "--format", "json", env=cache_env)
    assert done.returncode == 0, done.stderr
    from_img, from_png = json.loads(done.stdout)
    assert sorted(from_img) == sorted(["image", *TASKS, "out_of_distribution"])
    for task in TASKS[:-1]:
        assert from_img[task]["prediction"] == from_png[task]["prediction"], task
        assert from_img[task]["probability"] == pytest.approx(from_png[task]["probability"], abs=2e-3), task
    img_loc, png_loc = from_img["location"], from_png["location"]
    assert 0 <= img_loc["x"] <= 2048 and 0 <= img_loc["y"] <= 2048  # in the original's 2048 frame
    assert img_loc["x"] == pytest.approx(png_loc["x"], abs=1.0) and img_loc["y"] == pytest.approx(png_loc["y"], abs=1.0)
    assert img_loc["size"] == pytest.approx(png_loc["size"], abs=0.2)
    assert img_loc["presence"] == pytest.approx(png_loc["presence"], abs=2e-3)
    assert from_img["out_of_distribution"]["score"] == pytest.approx(from_png["out_of_distribution"]["score"],
                                                                     rel=1e-2, abs=1e-3)
