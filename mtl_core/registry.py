"""A generic name -> builder registry with "did you mean" errors (after MONAI's ``look_up_option``)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import MTLError

T = TypeVar("T")
#: the one naming rule of registry keys, task names and kinds, plugin names: lower-case letters, digits and
#: underscores, starting with a letter
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


def is_snake_case(name: object) -> bool:
    """Whether ``name`` is a string that follows :data:`SNAKE_CASE` (``"uncertainty"``, not ``"Nash_MTL"``)."""
    return isinstance(name, str) and SNAKE_CASE.match(name) is not None


def suggest(name: str, choices: list[str] | tuple[str, ...], what: str) -> str:
    """Return an error message for an unknown ``name`` with close matches and the available choices."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(sorted(choices)[:30]) + (", ..." if len(choices) > 30 else "")
    quoted = repr(name if len(name) <= 80 else name[:77] + "...")  # a name from a hostile config: still one line
    return f"unknown {what} {quoted}.{hint} Available: {shown}"


class Registry(Generic[T]):
    """Maps snake_case names to builders.

    Example:
        >>> weightings = Registry("weighting strategy")
        >>> @weightings.register("static")
        ... class Static: ...
        >>> weightings.get("static").__name__
        'Static'
    """

    def __init__(self, what: str, error: type[MTLError] = MTLError) -> None:
        self.what = what
        self._error = error
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a duplicate name raises unless ``replace`` is set."""

        def decorate(obj: T) -> T:
            if name in self._items and not replace:
                raise self._error(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """Return the builder registered as ``name`` or raise with suggestions."""
        try:
            return self._items[name]
        except KeyError:
            raise self._error(suggest(name, list(self._items), self.what)) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
