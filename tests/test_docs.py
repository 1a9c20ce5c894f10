"""The documentation matches the code: the generated configuration reference, the README's quick start, and the
minimal plugin of docs/plugins.md."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", DOCS / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_what_the_generator_produces_now():
    gen = _generator()
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    hint = "docs/configuration.md is out of date: run .venv/bin/python docs/gen_config_reference.py"
    if gen.plugin_available():
        assert committed == gen.render(), hint
    else:  # without the JSRT plugin only the core part can be regenerated; it is a prefix of the full text
        assert committed.startswith(gen.render(include_plugin=False)), hint


def test_configuration_reference_documents_every_key_of_every_section():
    from mtl_core.config import RunConfig

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    pending = [RunConfig]
    while pending:
        model = pending.pop()
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is missing from docs/configuration.md"
            pending += [m for m in _generator()._nested_models(field.annotation) if m is not model]


def test_readme_quick_start_is_exactly_make_run_and_make_test():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```[a-z]*\n(.*?)```", section.group(1), re.S)
    assert block, "the quick start has no code block"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def _plugin_example(tmp_path: Path) -> Path:
    """Write the minimal plugin and its config from docs/plugins.md into ``tmp_path``; return the example folder."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class ShapesPlugin(Plugin)" in b)
    config = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "shapes_plugin.py:ShapesPlugin" in b)
    (tmp_path / "shapes_plugin.py").write_text(code, encoding="utf-8")
    example = tmp_path / "shapes_example"
    example.mkdir()
    (example / "config.yaml").write_text(config, encoding="utf-8")
    return example


def test_minimal_plugin_of_the_docs_validates_and_loads_its_data(tmp_path, monkeypatch, capsys):
    from mtl_core.cli import main
    from mtl_core.plugins import load_plugin

    _plugin_example(tmp_path)
    monkeypatch.chdir(tmp_path)  # the config names the plugin file relative to the working directory
    assert main(["validate", "shapes_example"]) == 0
    assert "2 tasks (kind, size)" in capsys.readouterr().out
    assert main(["validate", "shapes_example", "--set", "plugin_options.label_smothing=0.2"]) == 2
    assert "label_smothing" in capsys.readouterr().err

    plugin = load_plugin("./shapes_plugin.py:ShapesPlugin", {"label_smoothing": 0.1})
    records = plugin.load_records(plugin.synthetic_data(tmp_path / "data"))
    records.validate(plugin.tasks())
    assert len(records) == 60 and set(records.strata["kind"]) == {"disc", "square"}
    assert not np.isnan(records.targets["size"]).any()


@pytest.mark.slow
def test_minimal_plugin_of_the_docs_trains_and_writes_a_run_folder(tmp_path, monkeypatch, tmp_cache):
    from mtl_core.cli import main

    _plugin_example(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "shapes_example", "--set", "train.epochs=3", "--output", "out"]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"metrics.json", "predictions.csv", "model.json"}


def test_the_task_kind_of_the_docs_registers_trains_reports_and_round_trips(monkeypatch):
    """The OrdinalTask of docs/plugins.md, as written: registered, scored with its own metric, reported in its own
    section with the verdict on its beats metric, and rebuilt by task_from_schema."""
    import torch

    from mtl_core.evaluate import evaluate_outputs
    from mtl_core.report import beats_baseline, markdown_report
    from mtl_core.tasks import TASK_KINDS, task_from_schema

    monkeypatch.setattr(TASK_KINDS, "_items", dict(TASK_KINDS._items))  # the registry is as before after the test
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class OrdinalTask" in b)
    module = types.ModuleType("docs_ordinal")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, str(DOCS / "plugins.md"), "exec"), module.__dict__)
    task = module.OrdinalTask("subtlety", classes=["1", "2", "3", "4", "5"])
    assert TASK_KINDS.get("ordinal") is type(task)
    task.fit(np.array([0, 1, 1, 2, 4, np.nan]))
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 3, 4]), 5).float() * 5  # off by 0, 0, 1, 0 grades
    entry = evaluate_outputs([task], {"subtlety": logits}, {"subtlety": np.array([0, 1, 2, 4])})["subtlety"]
    assert entry["kind"] == "ordinal" and entry["metrics"]["grade_mae"] == 0.25 and beats_baseline(entry)
    report = markdown_report({"plugin": "docs"}, {"tasks": {"subtlety": entry}})
    assert "## Ordinal" in report and "| task | unit | n | grade_mae | baseline grade_mae | Acc |" in report
    assert type(task_from_schema(task.describe())) is type(task)


def test_every_module_path_the_docs_name_exists():
    # the docs point readers at files (`mtl_core/features/cache.py`); a moved or renamed module must move them too
    named = set()
    for page in [ROOT / "README.md", *DOCS.glob("*.md"), *ROOT.glob("plugins/*/README.md")]:
        named |= {(page.name, m) for m in re.findall(r"\bmtl_core/[\w/]+\.py\b", page.read_text(encoding="utf-8"))}
    assert named, "the docs name no module at all: is the pattern still right?"
    missing = sorted(f"{page}: {path}" for page, path in named if not (ROOT / path).is_file())
    assert missing == []
