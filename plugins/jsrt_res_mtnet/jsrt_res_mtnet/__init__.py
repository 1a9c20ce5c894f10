"""Res-MTNet on the JSRT chest X-ray nodule data set: a plugin for mtl-core."""

__version__ = "0.1.0"
