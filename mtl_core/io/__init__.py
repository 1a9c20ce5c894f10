"""Reading and writing files: images (PNG, JPEG, TIFF, DICOM and registered readers) and the engine's own
files (atomic writes, JSON, CSV, safetensors)."""

from __future__ import annotations

from .cache_admin import cache_entries, cache_report, prune_cache
from .files import (
    atomic_write,
    cache_dir,
    checksum,
    contained,
    csv_cell,
    csv_line,
    csv_text,
    drop_entry,
    file_digest,
    load_weights,
    read_checked,
    read_json,
    safetensors_chunks,
    safetensors_header,
    save_weights,
    tensor_bytes,
    write_csv,
    write_error,
    write_json,
)
from .images import core_reader_id, read_image, register_reader, supported_suffixes
from .limits import ImageLimits, image_limits, positive_int_env, reset_image_limits, set_image_limits
from .locks import build_folder_once, exclusive_lock
from .output_folder import OutputFolder, check_output, claim_output, refuse_link
from .run_folder import RUN_FOLDER_FORMAT, RunModel, check_run_format, read_run_model, run_file, write_run_model

__all__ = [
    "ImageLimits", "OutputFolder", "RUN_FOLDER_FORMAT", "RunModel", "atomic_write", "build_folder_once", "cache_dir",
    "cache_entries", "cache_report", "check_output", "check_run_format", "checksum", "claim_output", "contained",
    "core_reader_id", "csv_cell", "csv_line", "csv_text", "drop_entry", "exclusive_lock", "file_digest",
    "image_limits", "load_weights", "positive_int_env", "prune_cache", "read_checked", "read_image", "read_json",
    "read_run_model", "refuse_link", "register_reader", "reset_image_limits", "run_file", "safetensors_chunks",
    "safetensors_header", "save_weights", "set_image_limits", "supported_suffixes", "tensor_bytes", "write_csv",
    "write_error", "write_json", "write_run_model"
]
