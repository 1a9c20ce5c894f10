"""The ``mtl`` command line. Importing it stays light: each command imports what it needs when it runs."""

from __future__ import annotations

from .app import EXIT_USER_ERROR, build_parser, console, exit_quickly, main

__all__ = ["EXIT_USER_ERROR", "build_parser", "console", "exit_quickly", "main"]
