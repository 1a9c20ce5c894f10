"""Write the ``config.yaml`` that ``mtl init table`` infers, with a comment on every choice to review.

The text is written by hand, not by a YAML dumper, so that each inferred line carries its reason; the result is
read back with the engine's config loader and the table plugin before it is kept (a config that does not load or
does not read its own data is a bug here, never the user's problem).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig, validate_model
from ..errors import MTLError
from ..plugins import load_plugin
from .files import write_files
from .table import TableGuess, infer_table

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/ ]*$")
LINE = 118  # width of the written lines
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}
_MODEL = """\
# The model: one EfficientNet-Lite0 whose ImageNet weights install with mtl-core (real features offline), frozen,
# features cached after the first run. For a quick look: `--set 'model.backbones=[mtl_small_cnn]' --set
# model.weights=random --set data.image_size=64`; for more accuracy add tf_efficientnet_lite2 (docs/configuration.md).
model:
  backbones: [tf_efficientnet_lite0]
  weights: pretrained
  pooling: {pooling}
  trunk: {{hidden: 256, depth: 2, dropout: 0.1}}

loss:
  strategy: static

train:
  epochs: 100
  batch_size: 32
  lr: 1.0e-3
  patience: 15
  seed: 0
"""


def scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar that reads back as the same value (text stays text: ``'1'``, ``'yes'``)."""
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and text == text.strip():
        return text
    return json.dumps(text)


def flow(value: Any) -> str:
    """A list or mapping as one line of YAML flow style."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def _comment(line: str, why: str, width: int = 40) -> str:
    """``line`` with ``why`` as a trailing comment, or as comment lines above it when that is too long."""
    if not why:
        return line
    if len(line) < width and width + len(why) + 3 <= LINE:
        return f"{line.ljust(width)} # {why}"
    indent = " " * (len(line) - len(line.lstrip()))
    return "\n".join(textwrap.wrap(why, LINE, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}#   ")
                     + [line])


def _tasks(guess: TableGuess) -> list[str]:
    lines, written = ["  tasks:"], set()
    for column in guess.columns:
        if column.role == "task" and column.task in guess.tasks and column.task not in written:
            written.add(column.task)  # once, also for a point task that reads two columns
            spec = guess.tasks[column.task]
            lines.append(_comment(f"    {scalar(column.task)}: {flow(spec)}", column.why))
    left = [c for c in guess.columns if c.role == "left_out"]
    if left:
        lines.append("  # left out (not a task); declare one by hand if it is:")
        lines += [textwrap.fill(f"{c.name}: {c.why}", LINE, initial_indent="  #   ", subsequent_indent="  #     ")
                  for c in left]
    return lines


def config_text(guess: TableGuess, data_path: str, name: str) -> str:
    """The commented ``config.yaml`` of ``guess`` (``data_path`` as written in ``data.path``)."""
    files = guess.why("file")
    lines = [
        f"# Written by `mtl init table` from {guess.table} ({guess.rows} rows). Everything below was inferred from the",
        "# table's values: review each commented line, then `mtl validate` this folder and `mtl run` it.",
        "plugin: table",
        "plugin_options:",
        _comment(f"  table: {scalar(guess.table)}", "relative to data.path"),
        _comment(f"  images: {scalar(guess.images)}", f"the folder of the files of column {guess.file_column!r}"),
        _comment(f"  id_column: {scalar(guess.id_column)}", guess.why("id") or "the file name is the id"),
        _comment(f"  file_column: {scalar(guess.file_column)}", files),
    ]
    if guess.group_column:
        lines.append(_comment(f"  group_column: {scalar(guess.group_column)}", guess.why("group")))
    lines.append(_comment(f"  missing_values: {flow(guess.missing_values)}", guess.markers_why))
    classes = [n for n, s in guess.tasks.items() if s["kind"] in ("classification", "binary")]
    if classes:
        lines.append(_comment(f"  # stratify: {classes[0]}", "uncomment to keep each class's share in the split"))
    lines += _tasks(guess)
    pooling = "map                  # a point task reads feature maps" if any(
        s["kind"] == "point" for s in guess.tasks.values()) else "avg"
    lines += ["", "data:", _comment(f"  path: {scalar(data_path)}", "relative to this file"),
              "  image_size: 224", "  split: {test_fraction: 0.25, val_fraction: 0.15, seed: 0}", "",
              _MODEL.format(pooling=pooling).rstrip(), "",
              _comment(f"output: {scalar('runs/' + name)}", "relative to the folder you run mtl in")]
    return "\n".join(lines) + "\n"


def write_table_config(data_dir: Path, output: Path, table: str | Path | None = None) -> tuple[Path, TableGuess]:
    """Infer a ``table`` config for ``data_dir``, check that it loads and reads the data, write
    ``output/config.yaml``; return its path and the guess."""
    guess = infer_table(Path(data_dir), table)
    if not guess.tasks:
        reasons = "; ".join(f"{c.name}: {c.why}" for c in guess.columns if c.role == "left_out") or "no other column"
        raise MTLError(f"no column of {guess.table} can be a task ({reasons}); declare the tasks by hand "
                       f"(docs/configuration.md, plugin options: table)")
    output = Path(output)
    data_path = Path(os.path.relpath(Path(data_dir).resolve(), output.resolve())).as_posix()
    text = config_text(guess, data_path, name=Path(data_dir).resolve().name or "table")
    _check(text, guess)
    return write_files(output, {"config.yaml": text})[0], guess


def _check(text: str, guess: TableGuess) -> None:
    """The written text is a valid config whose options read the data folder into valid records."""
    config = validate_model(RunConfig, yaml.safe_load(text), "the inferred config")
    plugin = load_plugin("table", config.plugin_options)  # type: ignore[attr-defined]
    records = plugin.load_records(guess.data_dir)
    records.validate(plugin.tasks())
