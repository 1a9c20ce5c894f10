"""Pydantic's errors reach a user in our one-line form: what is wrong, where, how to fix it (issue 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import Field, ValidationError

from mtl_core.cli import EXIT_USER_ERROR, main
from mtl_core.config import Strict, describe_errors, load_config
from mtl_core.errors import ConfigError


def _config(tmp_path: Path, evaluation: dict) -> Path:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"plugin": "table", "evaluation": evaluation}))
    return tmp_path


@pytest.mark.parametrize("rule", ["sens", "sensitivity", "sensitivity:1.5", "sensitivity:0", "youden:0.9"])
def test_an_unknown_threshold_rule_says_which_rules_exist(tmp_path, rule):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, {"threshold": rule}))
    assert (f"evaluation.threshold: use 'youden' or 'sensitivity:S' with S in (0, 1], e.g. sensitivity:0.9 "
            f"(got '{rule}')") in str(info.value)


@pytest.mark.parametrize("rule", ["youden", "sensitivity:0.9", "sensitivity:1"])
def test_threshold_rules_are_accepted(tmp_path, rule):
    assert load_config(_config(tmp_path, {}), [f"evaluation.threshold={rule}"]).evaluation.threshold == rule


class _A(Strict):
    kind: Literal["a"]


class _B(Strict):
    kind: Literal["b"]
    size: int = Field(1, ge=1)


class _Options(Strict):
    parts: dict[str, Annotated[_A | _B, Field(discriminator="kind")]]


def test_a_discriminated_union_says_missing_or_unknown_kind_in_our_words():
    with pytest.raises(ValidationError) as info:
        _Options(parts={"x": {}, "y": {"kind": "c"}})
    assert describe_errors(info.value.errors()) == ["parts.x: missing 'kind'", "parts.y: unknown 'kind' 'c'; use one "
                                                                                "of 'a', 'b'"]


def test_a_table_task_without_kind_is_one_line_listing_the_kinds(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"plugin": "table", "plugin_options": {
        "tasks": {"size": {"unit": "mm"}}}}))
    assert main(["validate", str(tmp_path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert "tasks.size: missing 'kind'; use one of classification, binary, regression, point" in err
