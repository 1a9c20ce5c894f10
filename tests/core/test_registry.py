"""Tests for mtl_core.registry and the project's registries: names, duplicates and "did you mean" errors."""

from __future__ import annotations

import pytest

from mtl_core.errors import ConfigError, MTLError
from mtl_core.registry import Registry, suggest
from mtl_core.tasks import TASK_KINDS
from mtl_core.train import WEIGHTINGS

# Every registry the engine exposes, with the error its lookups raise. A new registry belongs here.
PROJECT_REGISTRIES = [pytest.param(WEIGHTINGS, ConfigError, id="weightings"),
                      pytest.param(TASK_KINDS, MTLError, id="task_kinds")]


def _registry(error: type[MTLError] = MTLError) -> Registry:
    registry: Registry = Registry("colour", error)
    for name in ("red", "green", "blue"):
        registry.register(name)(lambda name=name: name)
    return registry


def test_register_get_names_contains_and_iterate():
    registry = _registry()
    assert registry.get("green")() == "green"
    assert registry.names() == ["blue", "green", "red"] == list(registry)
    assert "red" in registry and "purple" not in registry


def test_register_returns_the_object_so_it_works_as_a_decorator():
    registry: Registry = Registry("thing")

    @registry.register("widget")
    class Widget:
        pass

    assert registry.get("widget") is Widget and Widget.__name__ == "Widget"


@pytest.mark.parametrize("error", [MTLError, ConfigError])
def test_duplicate_name_raises_and_keeps_the_first(error):
    registry = _registry(error)
    first = registry.get("red")
    with pytest.raises(error, match="'red' is already registered"):
        registry.register("red")(lambda: "other")
    assert registry.get("red") is first


def test_unknown_name_suggests_close_names_and_lists_the_available_ones():
    with pytest.raises(MTLError) as info:
        _registry().get("gren")
    assert str(info.value).startswith("unknown colour 'gren'. Did you mean 'green'")
    assert str(info.value).endswith("? Available: blue, green, red")


def test_unknown_name_without_close_match_still_lists_the_available_ones():
    with pytest.raises(MTLError) as info:
        _registry().get("zzz")
    assert "Did you mean" not in str(info.value) and "Available: blue, green, red" in str(info.value)


def test_suggestions_truncate_a_long_list_but_still_find_a_close_name():
    names = [f"filler_{i:03d}" for i in range(100)] + ["efficientnet_b7"]
    message = suggest("efficientnet_b8", names, "backbone")
    assert "Did you mean 'efficientnet_b7'?" in message and message.endswith(", ...")
    assert "filler_099" not in message.split("Available:")[1]


@pytest.mark.parametrize(("registry", "error"), PROJECT_REGISTRIES)
def test_project_registry_lookups(registry, error):
    names = registry.names()
    assert names and names == sorted(names)
    assert all(name.islower() and " " not in name and "-" not in name for name in names)  # snake_case keys
    assert all(callable(registry.get(name)) for name in names)
    typo = names[0][:-1] + "x"
    with pytest.raises(error, match=f"Did you mean '{names[0]}'"):
        registry.get(typo)
    with pytest.raises(error, match="already registered"):
        registry.register(names[0])(object)
    assert registry.names() == names
