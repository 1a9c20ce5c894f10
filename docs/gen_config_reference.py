"""Generate ``docs/configuration.md`` from the pydantic models of ``mtl_core/config/models.py``.

Every model reachable from :class:`mtl_core.config.RunConfig` gets a table of its keys (type and constraints,
default, description). The description is the field's ``Field(description=...)``; for fields that have none yet,
:data:`EXTRA` supplies one (a ``Field`` description always wins). The JSRT plugin's option models are appended when
the plugin is importable.

Usage::

    .venv/bin/python docs/gen_config_reference.py          # rewrite docs/configuration.md
    .venv/bin/python docs/gen_config_reference.py --check  # exit 1 when the committed file is out of date

``tests/test_docs.py`` runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mtl_core.config import RunConfig

OUTPUT = Path(__file__).resolve().parent / "configuration.md"
PLUGIN_MODELS = ("JSRTOptions", "PhantomOptions")  # documented only when the JSRT plugin is importable

# Descriptions for fields whose Field() has none, keyed by (model class name, field name). A key that names no
# field is an error (see _check_extra), so this table cannot silently go stale.
EXTRA: dict[tuple[str, str], str] = {
    ("RunConfig", "plugin_options"): "options of the plugin, validated by the plugin's own Options model",
    ("RunConfig", "fallback"): "model settings used instead of `model` when pretrained weights cannot be found; "
                               "null for none",
    ("RunConfig", "tasks"): "per-task overrides, keyed by task name (an unknown task name is an error)",
    ("DataConfig", "image_size"): "side (pixels) that every image is resized to before the backbones",
    ("SplitConfig", "test_fraction"): "share of every stratum held out for the final metrics",
    ("SplitConfig", "seed"): "seed of the split",
    ("ModelConfig", "backbones"): "timm or torchvision model names; their pooled vectors are concatenated in "
                                  "this order",
    ("ModelConfig", "on_missing_weights"): "pretrained weights not on the machine (and downloads off): 'random' "
                                           "warns and initialises randomly, 'error' stops. Not consulted when a "
                                           "`fallback` section applies",
    ("ModelConfig", "pooling"): "'avg': one globally pooled vector per backbone; 'grid': the last feature map "
                                "averaged over grid x grid cells (timm backbones only); 'map': the deepest "
                                "`map_levels` feature maps at `map_size` x `map_size`, stored as float16 "
                                "(docs/memory.md has what they cost)",
    ("TrunkConfig", "dropout"): "dropout after fc1 and inside every residual block",
    ("TrunkConfig", "norm"): "normalisation after fc1 and after each block's first linear layer: none, "
                             "BatchNorm1d or LayerNorm",
    ("FallbackConfig", "backbones"): "replaces `model.backbones` (null: keep them)",
    ("FallbackConfig", "pooling"): "replaces `model.pooling` (null: keep it)",
    ("FallbackConfig", "grid"): "replaces `model.grid` (null: keep it)",
    ("FallbackConfig", "map_size"): "replaces `model.map_size` (null: keep it)",
    ("FallbackConfig", "map_levels"): "replaces `model.map_levels` (null: keep it)",
    ("FallbackConfig", "image_size"): "replaces `data.image_size` (null: keep it)",
    ("FallbackConfig", "trunk"): "replaces `model.trunk` as a whole (null: keep it)",
    ("FallbackConfig", "reason"): "why the fallback exists; printed and recorded in the run's notes",
    ("TaskOverride", "weight"): "static loss weight lambda_t, replacing the plugin's default",
    ("TaskOverride", "label_smoothing"): "label smoothing of a classification task (ignored for binary and "
                                         "regression tasks)",
    ("TaskOverride", "enabled"): "false drops the task: no head, no loss, no metrics",
    ("TrainConfig", "epochs"): "maximum number of epochs",
    ("TrainConfig", "batch_size"): "batch size of training",
    ("TrainConfig", "lr"): "Adam learning rate",
    ("TrainConfig", "weight_decay"): "Adam weight decay",
    ("TrainConfig", "patience"): "epochs without a lower validation loss before training stops; the best epoch's "
                                 "weights are restored",
    ("TrainConfig", "seed"): "seed of training, of the trunk's and heads' initialisation and of randomly "
                             "initialised backbones",
    ("TrainConfig", "device"): "'auto' (cuda, then mps, then cpu) or a torch device such as 'cpu' or 'cuda:1'; "
                               "also used for feature extraction",
    ("PhantomOptions", "bit_depth"): "8-bit PNGs, or 16-bit PNGs spanning 0..65535",
    ("PhantomOptions", "seed"): "the same seed gives byte-identical files",
}

INTRO = """\
# Configuration reference

<!-- Generated by docs/gen_config_reference.py from the pydantic models; do not edit by hand. -->

A run is configured by one YAML (or JSON) file: `mtl run DIR` and `mtl validate DIR` read `DIR/config.yaml`
(else `config.yml`, else `config.json`), or a file named directly. Every section is a frozen pydantic model with
`extra="forbid"`: a misspelt key is an error that names the key and the file, and every mistake of a file is listed
at once (`FILE: 3 problems: train.lr: ...; model.backbones: ...`). `mtl validate DIR` runs every check `mtl run`
makes before extracting features (the plugin's options, the tasks, the backbones and their weights, the data's
records and splits when the data is at hand), without extracting or training.

- `--set key.sub=value` (repeatable) overrides one key before validation; the value is parsed as YAML, so
  `--set train.lr=1e-3`, `--set model.frozen=false` and `--set 'model.backbones=[resnet18, resnet50]'` work,
  and `--set fallback=null` removes a section.
- Relative paths: `data.path` is relative to the config file (the folder it is in); `output`, `--output` and
  `--data` are relative to the current working directory (where `mtl` is started), as is a plugin given as
  `path/to/file.py:ClassName`. The `table` plugin's `table` and `images` are relative to the data folder.
- `--data PATH` and `--output PATH` on the command line take precedence over `data.path` and `output`.
- The `fallback` section applies only when `model.weights` is `pretrained`, `model.allow_download` is false and
  at least one backbone of `model.backbones` has no pretrained weights on the machine (`$MTL_WEIGHTS_DIR` or the
  timm / torch caches). Its non-null keys then replace the model's, and every backbone is randomly initialised.
"""


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models inside a type annotation (``X``, ``X | None``, ``dict[str, X]``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def _walk(model: type[BaseModel], path: str, seen: dict[type[BaseModel], str]) -> None:
    """Record the first config path of every model reachable from ``model`` (depth first, field order)."""
    seen.setdefault(model, path)
    for name, field in model.model_fields.items():
        origin = typing.get_origin(field.annotation)
        child_path = f"{path}.{name}" if path else name
        if origin is dict:
            child_path += ".<name>" if name != "tasks" else ".<task>"
        for child in _nested_models(field.annotation):
            if child not in seen:
                _walk(child, child_path, seen)


def _type_name(annotation: Any, paths: dict[type[BaseModel], str]) -> str:
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        target = paths.get(annotation)
        return f"[{annotation.__name__}](#{_slug(target)})" if target else annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # e.g. a discriminated union: the type is the first argument
        return _type_name(args[0], paths)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a, paths) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a, paths) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is Path or annotation is type(Path()):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"))


def _annotated(annotation: Any) -> list[Any]:
    """Constraints written into the type (``Annotated[float, Field(ge=0)] | None``, such as ``LabelSmoothing``)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return [m for item in annotation.__metadata__ for m in getattr(item, "metadata", [item])]
    return [m for arg in typing.get_args(annotation) for m in _annotated(arg)]


def _constraints(field: FieldInfo) -> str:
    out = []
    for item in [*field.metadata, *_annotated(field.annotation)]:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(item, kind):
                out.append(f"{symbol} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            out.append(f"at least {item.min_length} item{'s' if item.min_length != 1 else ''}")
    return ", ".join(out)


def _default(field: FieldInfo, paths: dict[type[BaseModel], str]) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            target = paths.get(type(value))
            return f"see [{target}](#{_slug(target)})" if target else "its defaults"
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value)}`"


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    text = field.description or EXTRA.get((model.__name__, name), "")
    if not text and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
        text = _summary(field.annotation)
    return text.replace("|", "\\|")


def _table(model: type[BaseModel], heading: str, paths: dict[type[BaseModel], str]) -> list[str]:
    lines = [heading, "", f"`{model.__name__}`: {_summary(model)}", "", "| key | type | default | description |",
             "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = _type_name(field.annotation, paths)
        bounds = _constraints(field)
        if bounds:
            kind += f", {bounds}"
        lines.append(f"| `{name}` | {kind} | {_default(field, paths)} | {_description(model, name, field)} |")
    return lines + [""]


def _check_extra(models: list[type[BaseModel]], with_plugin: bool) -> None:
    known = {(m.__name__, f) for m in models for f in m.model_fields}
    stale = sorted(k for k in set(EXTRA) - known if with_plugin or k[0] not in PLUGIN_MODELS)
    if stale:
        raise SystemExit(f"EXTRA in {__file__} names fields that do not exist: {stale}")


def _plugin_models() -> dict[type[BaseModel], str] | None:
    """The JSRT plugin's option models and their config paths, or None when the plugin is not installed."""
    try:
        from jsrt_res_mtnet.plugin import JSRTOptions
    except ImportError:
        return None
    seen: dict[type[BaseModel], str] = {}
    _walk(JSRTOptions, "plugin_options", seen)
    return seen


def plugin_available() -> bool:
    """True when the JSRT plugin's option models can be imported."""
    return _plugin_models() is not None


def render(include_plugin: bool | None = None) -> str:
    """The whole of ``docs/configuration.md``. The core part never depends on the plugin, so it is a prefix of
    the text with the plugin's sections."""
    core: dict[type[BaseModel], str] = {}
    _walk(RunConfig, "", core)
    core[RunConfig] = "top level"
    plugin = _plugin_models() if include_plugin is not False else None
    if include_plugin and plugin is None:
        raise SystemExit("the JSRT plugin (jsrt_res_mtnet) is not importable; install plugins/jsrt_res_mtnet")
    _check_extra(list(core) + list(plugin or {}), plugin is not None)
    lines = [INTRO]
    for model, path in core.items():
        lines += _table(model, f"## {path}", core)
    example = yaml.safe_dump(RunConfig(plugin="jsrt_res_mtnet").model_dump(mode="json"), sort_keys=False)
    lines += ["## Every default", "", "The defaults of every key (with `plugin: jsrt_res_mtnet`), as `mtl run` "
              "writes them to a run folder's `config.yaml`:", "", "```yaml", example.rstrip(), "```", ""]
    lines += _table_plugin_sections()  # the core ships the table plugin: always documented, before any other
    if plugin:
        lines += ["## Plugin options: jsrt_res_mtnet", "",
                  "With `plugin: jsrt_res_mtnet`, `plugin_options` is validated by the plugin's own models below "
                  "(see `plugins/jsrt_res_mtnet/README.md`).", ""]
        anchors = {model: f"{path} (jsrt_res_mtnet)" for model, path in plugin.items()}
        for model, heading in anchors.items():
            lines += _table(model, f"### {heading}", anchors)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/configuration.md, or with ``--check`` report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is out of date; run: python docs/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


TABLE_INTRO = """\
With `plugin: table` (built into `mtl-core`), `plugin_options` name a label table and an image folder and declare
every task; no code is needed. See `examples/shapes/` and `examples/jsrt_table/`.

- Cells are compared as stripped text, numbers as numbers (`1`, `"1"` and `"1.0"` are the same value); `true` and
  `false` ignore case. A class cell is looked up as a class name, then in `mapping`, then in `patterns` (each a
  case-insensitive regular expression that must match the whole cell, whitespace collapsed; the first match wins).
- A label is missing (NaN, masked out of that task's loss and metrics) where the task's `when` condition does not
  hold or the cell is a missing marker (`missing`, else `missing_values`); a cell that matches no class is an
  error naming the line, unless `unknown: missing`.
- The image of a row is `images/<file>` (`file_column`, else the id); when that file does not exist, the file with
  the same name stem and any supported suffix (PNG, JPEG, TIFF, BMP, DICOM) is used.
"""


def _table_plugin_sections() -> list[str]:
    """The option models of the built-in ``table`` plugin (``mtl_core.plugins.table``), one table each."""
    from mtl_core.plugins.table.options import TableOptions

    seen: dict[type[BaseModel], str] = {}
    _walk(TableOptions, "plugin_options", seen)
    anchors = {}
    for model, path in seen.items():
        kind = model.model_fields.get("kind")
        task_kind = typing.get_args(kind.annotation)[0] if kind is not None and kind.is_required() else ""
        anchors[model] = f"{path} (table{': ' + task_kind if task_kind else ''})"
    lines = ["## Plugin options: table", "", TABLE_INTRO]
    for model, heading in anchors.items():
        lines += _table(model, f"### {heading}", anchors)
    return lines


if __name__ == "__main__":
    sys.exit(main())
