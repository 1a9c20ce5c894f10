"""Tests for mtl_core.config: strict keys, types, dotted overrides, YAML errors, and the shipped example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtl_core.cli import EXIT_USER_ERROR, main
from mtl_core.config import RunConfig, apply_overrides, load_config
from mtl_core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jsrt_res_mtnet"


def _write(tmp_path: Path, content: dict | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


MINIMAL = {"plugin": "my_plugin", "train": {"epochs": 3}}


def test_minimal_config_gets_the_documented_defaults(tmp_path):
    config = load_config(_write(tmp_path, MINIMAL))
    assert isinstance(config, RunConfig)
    assert config.train.epochs == 3 and config.train.lr == 1e-4 and config.loss.strategy == "static"
    assert config.model.frozen and config.model.trunk.hidden == 512
    assert load_config(tmp_path) == config  # a folder means its config.yaml


@pytest.mark.parametrize(("content", "key"), [
    ({**MINIMAL, "trian": {"epochs": 3}}, "trian"),
    ({**MINIMAL, "train": {"epoch": 3}}, "train.epoch"),
    ({**MINIMAL, "model": {"trunk": {"hiden": 64}}}, "model.trunk.hiden"),
    ({**MINIMAL, "tasks": {"size": {"wieght": 2.0}}}, "tasks.size.wieght"),
])
def test_unknown_key_is_a_config_error_naming_the_key_and_the_file(tmp_path, content, key):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and f"{key}:" in message and "spelling" in message


@pytest.mark.parametrize(("section", "value", "key"), [
    ({"train": {"epochs": "many"}}, "'many'", "train.epochs"),
    ({"train": {"lr": -1.0}}, "-1.0", "train.lr"),
    ({"model": {"frozen": "perhaps"}}, "'perhaps'", "model.frozen"),
    ({"model": {"pooling": "max"}}, "'max'", "model.pooling"),
    ({"model": {"backbones": []}}, "[]", "model.backbones"),
    ({"data": {"image_size": 8}}, "8", "data.image_size"),
])
def test_wrong_type_or_value_is_a_config_error_showing_what_was_given(tmp_path, section, value, key):
    path = _write(tmp_path, {**MINIMAL, **section})
    with pytest.raises(ConfigError, match=key) as info:
        load_config(path)
    assert str(path) in str(info.value) and f"(got {value})" in str(info.value)


def test_missing_plugin_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="plugin: Field required"):
        load_config(_write(tmp_path, {"train": {"epochs": 3}}))


@pytest.mark.parametrize("text", ["train:\n  epochs: [1, 2\n", "plugin: x\n\ttrain: 1\n", "a: b: c\n"])
def test_bad_yaml_is_a_config_error_with_file_and_line(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


@pytest.mark.parametrize(("text", "words"), [("- plugin: x\n", "mapping"), ("just text\n", "mapping")])
def test_top_level_must_be_a_mapping(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        load_config(_write(tmp_path, text))


def test_missing_file_or_folder_without_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no config.yaml"):
        load_config(tmp_path)


# ---- dotted overrides ----------------------------------------------------------------------------------------


def test_dotted_overrides_apply_and_are_typed(tmp_path):
    config = load_config(_write(tmp_path, MINIMAL), [
        "train.epochs=5", "train.lr=1e-3", "model.frozen=false", "model.backbones=[test_resnet, test_efficientnet]",
        "loss.strategy=uncertainty", "tasks.size.weight=2", "plugin_options.phantom.size=64", "data.path=",
    ])
    assert config.train.epochs == 5 and type(config.train.epochs) is int
    assert config.train.lr == pytest.approx(1e-3) and type(config.train.lr) is float
    assert config.model.frozen is False
    assert config.model.backbones == ["test_resnet", "test_efficientnet"]
    assert config.loss.strategy == "uncertainty"
    assert config.tasks["size"].weight == 2.0
    assert config.plugin_options == {"phantom": {"size": 64}}
    assert config.data.path is None
    assert config.train.batch_size == 32  # untouched keys keep their values


def test_later_override_wins():
    assert apply_overrides({"train": {"epochs": 1}}, ["train.epochs=2", "train.epochs=3"]) == {"train": {"epochs": 3}}


@pytest.mark.parametrize(("override", "words"), [
    ("train.epoch=5", "train.epoch"),
    ("train.epochs=five", "train.epochs"),
    ("train.epochs", "key.sub=value"),
    ("=5", "key.sub=value"),
    ("train.epochs.max=5", "'epochs' is not a section"),
])
def test_bad_override_is_a_config_error_naming_it(tmp_path, override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(_write(tmp_path, MINIMAL), [override])


def test_relative_data_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "example"
    folder.mkdir()
    _write(folder, {**MINIMAL, "data": {"path": "data/images"}})
    monkeypatch.chdir(tmp_path)
    assert Path(load_config("example").data.path) == (folder / "data" / "images").resolve()


def test_shipped_example_config_is_valid():
    config = load_config(EXAMPLE, ["model.backbones=[test_resnet,test_efficientnet]", "train.epochs=2"])
    assert config.plugin == "jsrt_res_mtnet"
    assert config.model.backbones == ["test_resnet", "test_efficientnet"] and config.train.epochs == 2


def test_cli_reports_a_config_error_as_one_line_and_exit_code_2(tmp_path, capsys):
    path = _write(tmp_path, MINIMAL)
    assert main(["validate", str(path), "--set", "train.epoch=5"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train.epoch" in err and "\n" not in err and "Traceback" not in err
