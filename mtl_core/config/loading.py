"""Loading a run configuration: bounded YAML, dotted ``--set`` overrides, and every validation error at once on one
line, each with its location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .limits import MAX_ALIASES, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, MAX_OVERRIDE_CHARS, SHOWN_CHARS, short_repr
from .models import RunConfig


class _TooBig(Exception):
    """A document past one of the limits above (the message names it)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts while it composes: past :data:`MAX_DEPTH` levels or :data:`MAX_ALIASES`
    aliases it stops, and before anything is built it measures the document with its aliases expanded (without
    expanding them) against :data:`MAX_NODES` and :data:`MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth, self._aliases = 0, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _TooBig(f"has more than {MAX_ALIASES} aliases (*name), the limit of a config")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(f"is nested more than {MAX_DEPTH} levels deep, the limit of a config")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {}, set())
        return self.construct_document(node)


def _measure(node: yaml.Node, level: int, memo: dict[int, tuple[int, int]], active: set[int]) -> tuple[int, int]:
    """(values, depth) of ``node`` with its aliases expanded; a shared node is measured once (``memo``)."""
    if level > MAX_DEPTH:
        raise _TooBig(f"is nested more than {MAX_DEPTH} levels deep (aliases expanded), the limit of a config")
    key = id(node)
    if key in active:
        raise _TooBig("has an alias that refers to a value holding it (a cycle)")
    if key not in memo:
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        size, depth = 1, 1
        for child in children:
            child_size, child_depth = _measure(child, level + 1, memo, active)
            size, depth = size + child_size, max(depth, child_depth + 1)
            if size > MAX_NODES:
                raise _TooBig(f"has more than {MAX_NODES:,} values with its aliases expanded, the limit of a config")
        active.discard(key)
        memo[key] = (size, depth)
    if level + memo[key][1] - 1 > MAX_DEPTH:
        raise _TooBig(f"is nested more than {MAX_DEPTH} levels deep (aliases expanded), the limit of a config")
    return memo[key]


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` within the limits above.

    Raises:
        yaml.YAMLError: the text is not YAML.
        ValueError: past a limit; the message names it.
    """
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooBig as exc:
        raise ValueError(str(exc)) from None


_TYPE_TAGS = {"int", "float", "str", "bool", "bytes", "list", "dict", "none"}


def _is_branch(part: Any) -> bool:
    """True for the part of a pydantic location that names a branch of a union (``literal['auto']``,
    ``constrained-int``), not a key: a key never holds '-' or '['."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "-" in part or "[" in part)


def describe_errors(errors: list[Any]) -> list[str]:
    """Pydantic errors as ``key: message (got value)`` lines, one per key: the branches of a union a value matches
    none of are said together (``data.batch_size: Input should be greater than or equal to 1 or 'auto' (got 0)``),
    with a hint for an unknown key."""
    grouped: dict[str, list[Any]] = {}
    for error in errors:
        key = ".".join(str(p) for p in error["loc"] if not _is_branch(p)) or "(top level)"
        key = key if len(key) <= SHOWN_CHARS else key[:SHOWN_CHARS - 3] + "..."  # a hostile key: still one line
        grouped.setdefault(key, []).append(error)
    return [_describe(key, group) for key, group in grouped.items()]


def _describe(key: str, group: list[Any]) -> str:
    first = group[0]
    value = first.get("input")
    got = "" if first["type"] == "missing" or isinstance(value, dict) else f" (got {short_repr(value)})"
    hint = ", remove it or check its spelling" if first["type"] == "extra_forbidden" else ""
    messages = [_message(first)] + [_message(e).removeprefix("Input should be ") for e in group[1:]]
    return f"{key}: {' or '.join(dict.fromkeys(messages))}{got}{hint}"


def _message(error: Any) -> str:
    """Pydantic's message, but in our words where its own names its machinery: a discriminated union's tag
    ("Unable to extract tag using discriminator 'kind'") becomes "missing 'kind'" or "unknown 'kind' 'x'; use one
    of ...", and a validator's message loses pydantic's "Value error, " prefix."""
    ctx = error.get("ctx") or {}
    if error["type"] == "union_tag_not_found":
        return f"missing {ctx.get('discriminator', 'tag')}"
    if error["type"] == "union_tag_invalid":
        return (f"unknown {ctx.get('discriminator', 'tag')} {short_repr(ctx.get('tag'))}; use one of "
                f"{ctx.get('expected_tags', '')}")
    return error["msg"].removeprefix("Value error, ")


MAX_PROBLEMS_SHOWN = 20  # a config of thousands of unknown keys gives one readable line, not thousands


def format_problems(source: str, problems: list[str]) -> str:
    """``source: problem`` for one problem, ``source: N problems: first; second; ...`` for several (one line; past
    :data:`MAX_PROBLEMS_SHOWN`, the first ones and how many more)."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    more = len(problems) - MAX_PROBLEMS_SHOWN
    shown = problems[:MAX_PROBLEMS_SHOWN] + ([f"and {more} more"] if more > 0 else [])
    return f"{source}: {len(problems)} problems: " + "; ".join(shown)


def _set(raw: dict[str, Any], item: str) -> str | None:
    """Apply one ``key.sub=value`` override to ``raw``; the problem with it, or None."""
    if len(item) > MAX_OVERRIDE_CHARS:
        return (f"override {short_repr(item)} is {len(item):,} characters long, more than the limit of "
                f"{MAX_OVERRIDE_CHARS:,}; put long values in the config file")
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        return f"override {short_repr(item)} is not of the form key.sub=value"
    parts = key.strip().split(".")
    if len(parts) > MAX_DEPTH:
        return f"override {short_repr(item)}: its key has more than {MAX_DEPTH} levels, the limit of a config"
    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        value = text
    except ValueError as exc:
        return f"override {short_repr(item)}: its value {exc}"
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return f"override {short_repr(item)}: {short_repr(part)} is not a section"
        node = child
    node[parts[-1]] = value
    return None


def _apply(raw: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply every well-formed override; the problems of the others."""
    return [problem for item in overrides if (problem := _set(raw, item)) is not None]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict; every malformed override is
    reported at once in one :class:`ConfigError`."""
    problems = _apply(raw, overrides)
    if problems:
        raise ConfigError(format_problems("--set", problems) if len(problems) > 1 else problems[0])
    return raw


def read_raw(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, within the limits of a config (size, nesting, aliases)."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} bytes a config may "
                              "hold; a config holds settings, not data")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    try:
        raw = load_yaml(text) or {}
    except ValueError as exc:
        raise ConfigError(f"{path} {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}:{where} is not valid YAML: {problem}; fix the file's syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def config_file(target: Path) -> Path:
    """The config file of an example folder (``config.yaml``) or the file itself."""
    target = Path(target)
    if target.is_dir():
        for name in ("config.yaml", "config.yml", "config.json"):
            if (target / name).is_file():
                return target / name
        raise ConfigError(f"{target} has no config.yaml; an example folder needs one")
    if not target.is_file():
        raise ConfigError(f"{target} does not exist; give an example folder or a config file")
    return target


def load_config(target: Path | str, overrides: list[str] | None = None) -> RunConfig:
    """Load and validate a run config from a folder or file, with dotted overrides applied.

    Raises:
        ConfigError: every malformed override and every validation error at once, each with its location.
    """
    path = config_file(Path(target))
    raw = read_raw(path)
    problems = _apply(raw, overrides or [])
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems += describe_errors(exc.errors())
    if problems:
        raise ConfigError(format_problems(str(path), problems))
    if config.data.path and not Path(config.data.path).expanduser().is_absolute():
        resolved = str((path.parent / config.data.path).resolve())
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": resolved})})
    return config


def validate_model(model: type[BaseModel], raw: dict[str, Any], source: str) -> BaseModel:
    """Validate ``raw`` with ``model``; every failure at once in a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_problems(source, describe_errors(exc.errors()))) from None
