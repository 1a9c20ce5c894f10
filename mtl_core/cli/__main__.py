"""``python -m mtl_core.cli``: the same as the ``mtl`` script."""

from .app import console

console()
