"""Property-based tests: random malformed input to the metadata parser and the config loader gives a clean error
(``DataError`` / ``ConfigError``) or a valid result, never an unhandled exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsrt_res_mtnet.metadata import FRAME_SIZE, OUTPUT_COLUMNS, STATES, read_metadata

from mtl_core.config import RunConfig, load_config
from mtl_core.errors import ConfigError, DataError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COLUMNS = ["study_id", "subtlety", "size", "age", "gender", "x", "y", "state", "position", "diagnosis"]
GOOD_ROWS = [
    ["JPCLN001.png", "5", "15", "53", "Male", "1634", "692", "malignant", "l.upper lobe", "lung cancer"],
    ["JPCLN002.png", "3", "30", "?", "Female", "614", "1090", "benign", "r.middle lobe(S4)", "granuloma"],
    ["JPCNN001.png", "", "", "30", "Female", "", "", "non-nodule", "", ""],
]
# Cells that are plausible, borderline or hostile: numbers at and beyond the limits, spellings, CSV syntax.
CELLS = st.one_of(
    st.sampled_from(["", " ", "?", "0", "1", "5", "6", "-1", "2047", "2048", "1e309", "nan", "inf", "-0", "3.5",
                     "benign", "Malignant", "non nodule", "NON-NODULE", "evil", "left lung", "r.lower lobe(S9)",
                     "susp. hamartoma", "JPCLN001.png", "jpcln001.PNG", '"', '""', "a,b", "\n", "\r\n", "\x00",
                     "\ufeff", "é", "1_000", "0x10", "１２"]),
    st.text(max_size=12),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _write(text: str | bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / "jsrt_metadata.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


def _check_metadata(path: Path) -> None:
    try:
        table = read_metadata(path)
    except DataError as exc:
        assert str(exc).strip() and "\n" not in str(exc), "a one-line message"
        return
    assert list(table.columns) == list(OUTPUT_COLUMNS) and len(table) > 0
    assert set(table["state"]) <= set(STATES)
    assert table["study_id"].map(lambda s: isinstance(s, str) and s.strip() == s and s != "").all()
    for column, low, high in (("subtlety", 1, 5), ("x", 0, FRAME_SIZE - 1e-9), ("y", 0, FRAME_SIZE - 1e-9),
                              ("size", 0, math.inf)):
        values = table[column].dropna()
        assert ((values >= low) & (values <= high)).all(), column


@st.composite
def tables(draw) -> str:
    header = draw(st.one_of(st.just(COLUMNS), st.permutations(COLUMNS), st.permutations(COLUMNS + ["extra", "Age"]),
                            st.lists(st.sampled_from(COLUMNS + ["extra", "State", " x "]), max_size=12)))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        base = dict(zip(COLUMNS, draw(st.sampled_from(GOOD_ROWS)), strict=True))
        row = [base.get(name.strip().lower(), "") for name in header]
        for index in draw(st.lists(st.integers(0, max(len(row) - 1, 0)), max_size=2)) if row else []:
            row[index] = draw(CELLS)
        if draw(st.integers(0, 7)) == 0 and row:  # a ragged row
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(CELLS, max_size=2))
        rows.append(row)
    quote = draw(st.booleans())
    lines = [",".join(f'"{c}"' if quote and '"' not in c else c for c in line) for line in [header, *rows]]
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@SETTINGS
@given(tables())
def test_metadata_parser_on_random_tables(text):
    _check_metadata(_write(text))


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_metadata_parser_on_random_bytes_and_text(data):
    _check_metadata(_write(data))


# ---- the config loader -----------------------------------------------------------------------------------------

KEYS = {
    "": ["plugin", "plugin_options", "data", "model", "fallback", "tasks", "loss", "train", "output", "evaluation"],
    "data": ["path", "image_size", "batch_size", "workers", "split"],
    "model": ["backbones", "weights", "on_missing_weights", "allow_download", "pooling", "grid", "frozen", "trunk"],
    "train": ["epochs", "batch_size", "lr", "weight_decay", "patience", "seed", "device"],
    "loss": ["strategy"],
    "tasks": ["size", "state"],
}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["jsrt_res_mtnet", "avg", "grid", "random", "1e-3", "-1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


@st.composite
def documents(draw, section: str = "", depth: int = 0):
    doc = {}
    for key in draw(st.lists(st.one_of(st.sampled_from(KEYS.get(section, ["x"])), st.text(max_size=6)),
                             max_size=5)):
        child = section if not section else f"{section}"
        nested = key in KEYS and depth < 2
        doc[key] = draw(documents(key, depth + 1)) if nested and draw(st.booleans()) else draw(VALUES)
        del child
    return doc


OVERRIDES = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["train.epochs", "model.trunk.hidden", "data", "plugin",
                                                        "train", "a..b", ".x", "tasks.size.weight", " "]),
              st.text(max_size=10)),
    st.text(max_size=15)), max_size=3)


def _check_config(text: str | bytes, overrides: list[str]) -> None:
    folder = Path(tempfile.mkdtemp())
    (folder / "config.yaml").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        config = load_config(folder, overrides)
    except ConfigError as exc:
        assert str(exc).strip()
        return
    assert isinstance(config, RunConfig)
    RunConfig.model_validate(config.model_dump())  # the result is itself valid


EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/jsrt_res_mtnet/config.yaml").read_text())
DOTTED = ["plugin", "plugin_options.state", "plugin_options.weights", "data.image_size", "data.split.test_fraction",
          "model.backbones", "model.weights", "model.pooling", "model.grid", "model.trunk.hidden", "model.trunk.norm",
          "fallback", "fallback.trunk", "tasks.size.weight", "loss.strategy", "train.epochs", "train.lr", "output"]


@st.composite
def mutated_example(draw) -> dict:
    """The example config with a few keys set to random values, deleted, or misspelt."""
    import copy

    doc = copy.deepcopy(EXAMPLE)
    for key in draw(st.lists(st.one_of(st.sampled_from(DOTTED), st.text(max_size=8)), min_size=1, max_size=3)):
        *parents, last = key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["set", "delete", "misspell"]))
        if action == "delete":
            node.pop(last, None)
        elif action == "misspell" and last in node:
            node[last[::-1] + "_"] = node.pop(last)
        else:
            node[last] = draw(VALUES)
    return doc


@SETTINGS
@given(st.one_of(documents(), mutated_example()), OVERRIDES)
def test_config_loader_on_random_documents(doc, overrides):
    _check_config(yaml.safe_dump(doc, allow_unicode=True), overrides)


@SETTINGS
@given(st.one_of(st.text(max_size=200),
                 st.sampled_from(["plugin: [", "a: *x", "!!python/object/apply:os.system ['true']", "---\n---",
                                  "plugin: jsrt_res_mtnet\ntrain: {epochs: 1e400}", "\t- a", "%YAML 9.9\n---"])),
       OVERRIDES)
def test_config_loader_on_random_text(text, overrides):
    _check_config(text, overrides)


@pytest.mark.parametrize("data", [b"\x80", b"plugin: jsrt_res_mtnet\ntrain: {seed: \xff}\n"])
def test_config_file_that_is_not_utf8(data):
    _check_config(data, [])


def test_yaml_error_is_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("plugin: jsrt\x08\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert "\n" not in str(caught.value)
