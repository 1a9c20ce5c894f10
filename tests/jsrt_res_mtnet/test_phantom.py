"""Tests for the synthetic JSRT phantom: layout, labels, determinism, anatomy and nodule contrast."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jsrt_res_mtnet.phantom import (
    CONTRAST_SCHEDULE,
    case_rng,
    generate_phantom,
    render_case,
    synthesize_metadata,
)
from jsrt_res_mtnet.phantom_labels import COLUMNS, DIAGNOSIS_COUNTS, POSITIONS
from PIL import Image

from mtl_core.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
REAL_TABLE = next(
    (path for path in (ROOT / "shared/data/jsrt_metadata.csv", ROOT.parent / "shared/data/jsrt_metadata.csv")
     if path.is_file()), ROOT / "shared/data/jsrt_metadata.csv",
)  # fmt: skip
MM_PER_FRAME_PX = 0.175


@pytest.fixture(scope="module")
def real_table() -> pd.DataFrame:
    if not REAL_TABLE.is_file():
        pytest.skip(f"real JSRT table not found at {REAL_TABLE}")
    return pd.read_csv(REAL_TABLE)


@pytest.fixture(scope="module")
def default_set(tmp_path_factory) -> Path:
    """The default 154 + 93 images, at the smallest size to keep the suite fast."""
    return generate_phantom(tmp_path_factory.mktemp("default"), size=32)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _side(position: str) -> str:
    return "right" if position.startswith(("r.", "right")) else "left"


def _nodule_row(state="malignant", x=600, y=700, size=25, subtlety=3, **extra) -> dict:
    return {"study_id": "JPCLN999.png", "state": state, "x": x, "y": y, "size": size, "subtlety": subtlety, **extra}


def _compactness(mask: np.ndarray) -> float:
    """4 pi area / perimeter^2 with the perimeter counted in pixel edges (a digital disc scores ~pi/4)."""
    m = np.pad(mask, 1)
    perimeter = np.count_nonzero(m[1:] != m[:-1]) + np.count_nonzero(m[:, 1:] != m[:, :-1])
    return 4 * np.pi * m.sum() / perimeter**2


# --- layout and table -------------------------------------------------------------------------------------------


def test_default_layout_and_csv(default_set):
    table = pd.read_csv(default_set / "jsrt_metadata.csv")
    assert tuple(table.columns) == COLUMNS
    assert table["study_id"].str.startswith("JPCLN").sum() == 154
    assert table["study_id"].str.startswith("JPCNN").sum() == 93
    assert table["study_id"].iloc[0] == "JPCLN001.png" and table["study_id"].iloc[-1] == "JPCNN093.png"
    files = sorted(p.name for p in (default_set / "images").iterdir())
    assert files == sorted(table["study_id"])
    image = np.asarray(Image.open(default_set / "images" / "JPCLN001.png"))
    assert image.dtype == np.uint8 and image.shape == (32, 32)


def test_csv_is_formatted_like_the_real_one(default_set):
    lines = (default_set / "jsrt_metadata.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert ".0," not in "\n".join(lines)
    non_nodule = [line.split(",") for line in lines[1:] if line.startswith("JPCNN")]
    for cells in non_nodule:
        assert cells[7] == "non-nodule"
        assert [cells[i] for i in (1, 2, 5, 6, 8, 9)] == [""] * 6  # subtlety, size, x, y, position, diagnosis
        assert cells[3] and cells[4]  # age and gender are known


def test_label_frequencies_follow_the_real_table(real_table):
    synthetic = synthesize_metadata(seed=3)
    for column in ("subtlety", "state", "position", "diagnosis", "gender"):
        assert synthetic[column].value_counts().to_dict() == real_table[column].value_counts().to_dict(), column
    assert sorted(synthetic["size"].dropna()) == sorted(real_table["size"].dropna())
    assert sorted(synthetic["age"].astype(str)) == sorted(real_table["age"].astype(str))
    assert pd.crosstab(synthetic["state"], synthetic["subtlety"]).equals(
        pd.crosstab(real_table["state"], real_table["subtlety"])
    )


def test_label_frequencies_scale_with_the_counts():
    table = synthesize_metadata(n_nodule=77, n_non_nodule=10, seed=1)
    nodules = table[table["state"] != "non-nodule"]
    assert nodules["subtlety"].value_counts().sort_index().tolist() == [12, 15, 25, 19, 6]  # half of 25/29/50/38/12
    assert nodules["state"].value_counts().to_dict() == {"malignant": 50, "benign": 27}
    assert 12 <= nodules["size"].median() <= 18 and nodules["size"].between(5, 60).all()
    for state in ("malignant", "benign"):
        assert set(nodules.loc[nodules["state"] == state, "diagnosis"]) <= set(DIAGNOSIS_COUNTS[state])


def test_side_and_lobe_agree_with_x_y():
    table = synthesize_metadata(seed=5).dropna(subset=["x"])
    right = table["position"].map(_side) == "right"
    assert (table.loc[right, "x"] < 1024).all() and (table.loc[~right, "x"] > 1024).all()
    lobe_y = {lobe: table.loc[table["position"].str.contains(lobe), "y"] for lobe in ("upper", "middle", "lower")}
    assert lobe_y["upper"].median() < lobe_y["middle"].median() < lobe_y["lower"].median()
    assert lobe_y["upper"].max() < 1320 and lobe_y["lower"].min() > 700  # the lingula (S4, S5) reaches y ~1270
    assert table.loc[table["position"].str.contains("middle"), "position"].str.startswith("r.").all()
    for position, (_, x0, x1, y0, y1) in POSITIONS.items():
        rows = table[table["position"] == position]
        assert rows["x"].between(x0 - 40, x1 + 40).all() and rows["y"].between(y0 - 40, y1 + 40).all()


def test_metadata_rows_are_rendered_and_written_back(tmp_path, real_table):
    rows = real_table.iloc[[0, 1, 105, 160, 161]]  # 105 has age '?'
    root = generate_phantom(tmp_path, size=32, metadata=rows)
    written = (root / "jsrt_metadata.csv").read_text().splitlines()
    original = REAL_TABLE.read_text().splitlines()
    assert written == [original[0]] + [original[i + 1] for i in rows.index]
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(rows["study_id"])


def test_metadata_without_the_real_table(tmp_path):
    rows = pd.DataFrame(
        [_nodule_row(study_id="a.png", age=50, gender="Male", position="r.upper lobe", diagnosis="granuloma"),
         {"study_id": "b.png", "state": "non-nodule", "x": None, "y": None, "size": None, "subtlety": None}]
    )  # fmt: skip
    root = generate_phantom(tmp_path, size=32, metadata=rows)
    lines = (root / "jsrt_metadata.csv").read_text().splitlines()
    assert lines[1] == "a.png,3,25,50,Male,600,700,malignant,r.upper lobe,granuloma"
    assert lines[2] == "b.png,,,,,,,non-nodule,,"


# --- files: determinism and formats -----------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    kwargs = {"size": 64, "n_nodule": 3, "n_non_nodule": 2}
    first = _digests(generate_phantom(tmp_path / "a", seed=7, **kwargs))
    assert first == _digests(generate_phantom(tmp_path / "b", seed=7, **kwargs))
    other = _digests(generate_phantom(tmp_path / "c", seed=8, **kwargs))
    assert all(first[name] != other[name] for name in first if name.startswith("images"))


def test_nested_layout(tmp_path):
    root = generate_phantom(tmp_path, size=32, n_nodule=1, n_non_nodule=1, nested=True)
    assert sorted(p.name for p in (root / "images" / "images").iterdir()) == ["JPCLN001.png", "JPCNN001.png"]
    assert not any(p.is_file() for p in (root / "images").iterdir())


def test_16_bit_png_uses_the_full_range(tmp_path):
    root = generate_phantom(tmp_path, size=64, n_nodule=1, n_non_nodule=0, bit_depth=16)
    image = np.asarray(Image.open(root / "images" / "JPCLN001.png"))
    assert image.dtype == np.uint16 and image.shape == (64, 64)
    assert image.max() > 50_000 and image.min() < 5_000


def test_jpg_output(tmp_path):
    root = generate_phantom(tmp_path, size=64, n_nodule=1, n_non_nodule=1, image_format="jpg")
    assert sorted(p.name for p in (root / "images").iterdir()) == ["JPCLN001.jpg", "JPCNN001.jpg"]
    assert Image.open(root / "images" / "JPCLN001.jpg").format == "JPEG"
    assert pd.read_csv(root / "jsrt_metadata.csv")["study_id"].tolist() == ["JPCLN001.jpg", "JPCNN001.jpg"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 16}, "size"),
        ({"size": 64.0}, "size"),
        ({"bit_depth": 12}, "bit_depth"),
        ({"image_format": "bmp"}, "image_format"),
        ({"image_format": "jpg", "bit_depth": 16}, "8 bits"),
        ({"seed": -1}, "seed"),
        ({"n_nodule": -1}, "n_nodule"),
        ({"n_nodule": 0, "n_non_nodule": 0}, "at least one"),
        ({"metadata": pd.DataFrame({"study_id": ["a.png"]})}, "lacks column"),
        ({"metadata": pd.DataFrame([_nodule_row(x=None)])}, "needs x, y"),
        ({"metadata": pd.DataFrame([_nodule_row(subtlety=7)])}, "subtlety"),
        ({"metadata": pd.DataFrame([_nodule_row(state="cyst")])}, "state"),
        ({"metadata": pd.DataFrame([_nodule_row(study_id="a.jpg")])}, "does not end in .png"),
        ({"metadata": pd.DataFrame([_nodule_row(study_id="../a.png")])}, "plain file name"),
    ],
)
def test_invalid_arguments_raise_data_error(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        generate_phantom(tmp_path, **{"size": 32, "n_nodule": 1, "n_non_nodule": 0, **kwargs})


# --- anatomy ----------------------------------------------------------------------------------------------------


def test_display_convention_and_lung_shapes_vary():
    row = {"study_id": "JPCNN001.png", "state": "non-nodule", "gender": "Male"}
    image, lungs, nodule = render_case(row, 128, np.random.default_rng(0))
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert not nodule.any()
    mediastinum = image[40:80, 60:68].mean()
    assert image[lungs].mean() < mediastinum - 0.3  # air dark, dense tissue bright
    assert image[:4, :4].mean() < 0.1  # air outside the body
    assert lungs[:, :64].any() and lungs[:, 64:].any() and not lungs[:, 62:66].any()
    _, other, _ = render_case(row, 128, np.random.default_rng(1))
    assert np.count_nonzero(lungs ^ other) > 0.02 * lungs.sum()


def test_every_real_nodule_lies_inside_its_lung(real_table):
    nodules = real_table[real_table["state"] != "non-nodule"]
    size = 64
    for row in nodules.to_dict("records"):
        _, lungs, nodule = render_case(row, size, case_rng(0, row["study_id"]))
        i, j = int(row["y"] * size / 2048), int(row["x"] * size / 2048)
        assert lungs[i, j], row["study_id"]
        assert nodule[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].any(), row["study_id"]


def test_synthetic_nodules_lie_inside_their_lung():
    table = synthesize_metadata(n_nodule=40, n_non_nodule=0, seed=2)
    for row in table.to_dict("records"):
        _, lungs, _ = render_case(row, 64, case_rng(2, row["study_id"]))
        assert lungs[int(row["y"] * 64 / 2048), int(row["x"] * 64 / 2048)], row


# --- nodules ----------------------------------------------------------------------------------------------------


def _contrast_and_texture(row: dict, seed: int, size: int = 128) -> tuple[list[float], float]:
    """Peak grey-level rise per subtlety 1..5 on one background, and the background's std around the nodule.

    The std is measured independently of the generator: raw grey levels of the nodule-free image, over the lung
    pixels of a ring from one to three nodule radii (at least 10 mm).
    """
    background, lungs, _ = render_case(row, size, np.random.default_rng(seed), with_nodule=False)
    scale = size / 2048
    radius = max(row["size"] / 2 / MM_PER_FRAME_PX * scale, 1.0)
    rows, cols = np.ogrid[:size, :size]
    distance = np.hypot(rows - (row["y"] + 0.5) * scale + 0.5, cols - (row["x"] + 0.5) * scale + 0.5)
    far = distance > 3 * radius + 4 / MM_PER_FRAME_PX * scale  # beyond the body and its spicules
    peaks = []
    for subtlety in range(1, 6):
        image, _, _ = render_case({**row, "subtlety": subtlety}, size, np.random.default_rng(seed))
        assert np.array_equal(image[far], background[far])  # same background, only the nodule added
        peaks.append(float((image - background).max()))
    outer = max(3 * radius, 10 / MM_PER_FRAME_PX * scale)
    return peaks, float(background[lungs & (distance >= radius) & (distance <= outer)].std())


@pytest.mark.parametrize("seed", range(6))
def test_subtlety_sets_contrast_against_the_texture(seed):
    positions = [(600, 700), (1550, 800), (450, 1000), (1650, 650), (650, 550), (1600, 1000)]  # open lung
    x, y = positions[seed]
    row = _nodule_row(state=("benign", "malignant")[seed % 2], x=x, y=y, size=(12, 20, 30)[seed % 3])
    peaks, texture = _contrast_and_texture(row, seed)
    assert peaks[0] < texture  # subtlety 1 hides in the texture
    assert all(a < b for a, b in zip(peaks, peaks[1:], strict=False))
    assert peaks[4] > 1.5 * texture  # subtlety 5 stands out
    assert peaks[4] / peaks[0] == pytest.approx(CONTRAST_SCHEDULE[5] / CONTRAST_SCHEDULE[1], rel=0.1)


def test_nodule_mask_matches_the_size_column():
    for size_mm in (10, 20, 40):
        _, _, nodule = render_case(_nodule_row(state="benign", size=size_mm), 256, np.random.default_rng(0))
        expected = np.pi * (size_mm / 2 / MM_PER_FRAME_PX * 256 / 2048) ** 2
        assert nodule.sum() == pytest.approx(expected, rel=0.15)


def test_malignant_outline_is_less_regular_than_benign():
    def compactness(state: str) -> list[float]:
        return [
            _compactness(render_case(_nodule_row(state=state, size=25), 256, np.random.default_rng(seed))[2])
            for seed in range(5)
        ]

    benign, malignant = compactness("benign"), compactness("malignant")
    assert min(benign) > 0.5
    assert max(malignant) < min(benign) - 0.1


def test_render_case_is_deterministic_and_rejects_bad_rows():
    row = _nodule_row()
    first = render_case(row, 64, np.random.default_rng(4))
    second = render_case(row, 64, np.random.default_rng(4))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(DataError, match="non-nodule"):
        render_case({"state": "non-nodule", "x": 3, "y": 4}, 64, np.random.default_rng(0))
    with pytest.raises(DataError, match="size"):
        render_case(row, 8, np.random.default_rng(0))
