# mtl_stripes/__init__.py
"""Stripes: a minimal plugin for mtl (see docs/write-a-plugin.md)."""
