"""Cases and their labels (records), splits, image loading and the cache of decoded images."""

from __future__ import annotations

from .input_cache import InputCache
from .records import (
    ImageDataset,
    ImageReader,
    Records,
    TensorData,
    TrainingInputs,
    load_image_tensor,
    reader_identity,
)
from .splits import Split, holdout_split, kfold_splits, small_strata, train_val_split

__all__ = [
    "ImageDataset", "ImageReader", "InputCache", "Records", "Split", "TensorData", "TrainingInputs", "holdout_split",
    "kfold_splits", "load_image_tensor", "reader_identity", "small_strata", "train_val_split"
]
