"""Plugin discovery with broken plugins installed: `mtl plugins` lists every healthy plugin and each broken one as
broken with a one-line reason (one that calls ``sys.exit`` at import used to end the listing silently, one with a
malformed ``Options`` aborted it with a traceback); `mtl run` and `mtl plugins check` on a broken one fail with one
line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from mtl_core.cli import EXIT_USER_ERROR, main
from mtl_core.errors import PluginError
from mtl_core.plugins import check_plugin, list_plugins, load_plugin

_COUNT = itertools.count()
HEALTHY = """
from mtl_core import Plugin, ClassificationTask
class Good(Plugin):
    name = "{name}"
    def tasks(self):
        return [ClassificationTask("kind", classes=["a", "b"])]
"""
BROKEN = {
    "exits at import": ("import sys\nsys.exit(3)\n", "SystemExit(3)"),
    "raises at import": ("raise RuntimeError('no GPU driver ' * 100)\n", "RuntimeError: no GPU driver"),
    "Options not a model": (HEALTHY + "    Options = 42\n", "Options is 42"),
    "Options config malformed": (HEALTHY + "    class Options:\n        model_config = None\n", "Options is"),
    "Options validator raises": (
        "from pydantic import field_validator\nfrom mtl_core import Strict\n" + HEALTHY
        + "    class Options(Strict):\n        x: int = 1\n        @field_validator('x')\n"
          "        @classmethod\n        def bad(cls, v):\n            raise TypeError('boom')\n"
          "        model_config = {**Strict.model_config, 'validate_default': True}\n", "TypeError: boom"),
    "tasks() exits": (HEALTHY.replace("return [", "raise SystemExit('bye'); return ["), "SystemExit('bye')"),
}


def _install(site: Path, plugins: dict[str, str]) -> dict[str, str]:
    """A distribution in ``site`` whose entry points name one module per plugin; returns name -> entry name."""
    info = site / "mtl_fixture_plugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtl-fixture-plugins\nVersion: 0.1\n")
    lines, names = ["[mtl.plugins]"], {}
    for label, source in plugins.items():
        name = f"fixture_{next(_COUNT)}"
        module = f"mtl_fixture_{name}"
        (site / f"{module}.py").write_text(source.replace("{name}", name))
        lines.append(f"{name} = {module}:Good")
        names[label] = name
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return names


@pytest.fixture
def installed(tmp_path, monkeypatch):
    names = _install(tmp_path, {"healthy": HEALTHY, **{label: src for label, (src, _) in BROKEN.items()}})
    monkeypatch.syspath_prepend(str(tmp_path))
    return names


def test_listing_shows_every_healthy_plugin_and_each_broken_one_with_its_reason(installed, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("fixture_")}
    assert set(lines) == set(installed.values()), out
    assert "tasks: kind" in lines[installed["healthy"]]
    assert "table  mtl-core" in out  # the core's own plugin is still listed
    for label, (_, reason) in BROKEN.items():
        line = lines[installed[label]]
        assert "broken: " in line and reason in line, (label, line)
        assert len(line) < 600, line
    assert f"{len(BROKEN)} of " in out and "plugins broken" in out


def test_list_plugins_marks_broken_plugins(installed):
    infos = {info.name: info for info in list_plugins(load=True)}
    assert infos[installed["healthy"]].problem is None and infos[installed["healthy"]].tasks == ("kind",)
    assert all(infos[installed[label]].problem for label in BROKEN)
    assert all(info.problem is None and not info.tasks for info in list_plugins())  # nothing imported


@pytest.mark.parametrize("label", list(BROKEN))
def test_a_broken_plugin_asked_for_is_one_error(installed, label):
    with pytest.raises(PluginError, match=BROKEN[label][1].replace("(", r"\(").replace(")", r"\)")):
        load_plugin(installed[label])
    if "import" in label:  # the class cannot be had: `mtl plugins check` says so in one line (exit 2)
        with pytest.raises(PluginError):
            check_plugin(installed[label])
    else:
        assert not check_plugin(installed[label]).ok  # a failed check: exit 1


def test_run_with_a_plugin_that_exits_is_one_line_and_exit_2(installed, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"plugin: {installed['exits at import']}\n")
    assert main(["validate", str(config)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "SystemExit(3)" in err and "\n" not in err
