"""``mtl compare --variant``: named rows of settings, and tables whose rows report different entries."""

from __future__ import annotations

import pytest

from mtl_core.errors import ConfigError
from mtl_core.workflow.compare import markdown_table, parse_variants


def test_variants_collect_their_overrides_by_name():
    assert parse_variants(["heads:plugin_options.localisation=regression", "heads:model.pooling=map",
                           "shared:model.share_heatmap=true"]) == {
        "heads": ["plugin_options.localisation=regression", "model.pooling=map"],
        "shared": ["model.share_heatmap=true"]}


@pytest.mark.parametrize("spec", ["no_colon", "Bad Name:a=b", "name:novalue", "no_residual:model.x=1"])
def test_a_malformed_variant_is_one_clear_error(spec):
    with pytest.raises(ConfigError, match="--variant"):
        parse_variants([spec])


def _entry(kind: str, metrics: dict) -> dict:
    return {"kind": kind, "unit": "px", "n": 3, "metrics": metrics, "baseline": metrics}


def test_rows_with_other_entries_leave_those_cells_empty():
    point = {"tasks": {"location": _entry("point", {"distance": 5.0, "hit_rate": 0.5, "mae_x": 1.0, "mae_y": 2.0}),
                       "x": _entry("regression", {"mse": 1.0, "mae": 1.0, "mse_scaled": 0.1, "mae_scaled": 0.1})}}
    scalar = {"tasks": {"x": _entry("regression", {"mse": 4.0, "mae": 2.0, "mse_scaled": 0.2, "mae_scaled": 0.2})}}
    rows = [{"backbones": "a", "ablation": "none"}, {"backbones": "a", "ablation": "heads"}]
    table = markdown_table(rows, [point, scalar]).splitlines()
    header, second = table[2], table[5]
    assert "location" in header and "x MAE (px)" in header
    assert second.count("|") == header.count("|")  # every row has every column
    assert "–" in second and "2.000" in second
