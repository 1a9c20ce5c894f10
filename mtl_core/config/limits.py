"""Limits on what a config file or a ``--set`` value may hold (docs/limits.md), and how error messages quote what
they received."""

from __future__ import annotations

import reprlib
from typing import Any

# No genuine config comes near them; they are there so that a hostile one fails in milliseconds with one line.
MAX_CONFIG_BYTES = 1_048_576  # a config file (the shipped examples' are 2-6 KB)
MAX_OVERRIDE_CHARS = 10_000  # one --set key=value
MAX_DEPTH = 32  # nesting of mappings and lists, aliases expanded (the deepest setting is 4 levels down)
MAX_ALIASES = 100  # *alias references in one document
MAX_NODES = 100_000  # values in one document with every alias expanded (a "billion laughs" expands to 10^9)
SHOWN_CHARS = 80  # the most of a received value an error message quotes

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = SHOWN_CHARS
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple, _SHORT.maxset = 2, 4, 4, 4, 4


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to about :data:`SHOWN_CHARS` characters, at a cost that does not grow with the value: what
    error messages quote of what they received."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."
