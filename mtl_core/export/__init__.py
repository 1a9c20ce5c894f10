"""A trained run as one ONNX graph (image tensor -> every task's decoded output, task schema in its metadata),
and running that graph with onnxruntime."""

from __future__ import annotations

from .engine import OnnxModel, load_onnx, onnx_columns
from .graph import ONNX_FORMAT, OOD_OUTPUT, DistanceReference, ExportGraph, export_onnx, image_contract, task_entries
from .outputs import KIND_EXPORTS, ExportError, KindExport, kind_export, register_kind_export

__all__ = [
    "DistanceReference", "ExportError", "ExportGraph", "KIND_EXPORTS", "KindExport", "ONNX_FORMAT", "OOD_OUTPUT",
    "OnnxModel", "export_onnx", "image_contract", "kind_export", "load_onnx", "onnx_columns", "register_kind_export",
    "task_entries",
]
