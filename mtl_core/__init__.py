"""mtl_core: a generic engine for multi-task deep learning on medical images.

Tasks with missing-label masks, backbone fusion, a residual shared trunk, per-task heads, weighted-loss
composition, training on cached features, evaluation and plugins. Heavy modules load lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module (under mtl_core) that defines it
_EXPORTS = {
    "MTLError": "errors", "ConfigError": "errors", "DataError": "errors", "PluginError": "errors",
    "WeightsError": "errors", "RunError": "errors",
    "Registry": "registry",
    "RunConfig": "config", "load_config": "config", "validate_model": "config", "Strict": "config",
    "LabelSmoothing": "config",
    "read_image": "io.images", "register_reader": "io.images", "supported_suffixes": "io.images",
    "core_reader_id": "io.images",
    "Task": "tasks.base", "TaskSchema": "tasks.base", "TASK_KINDS": "tasks.base", "register_task_kind": "tasks.base",
    "task_from_schema": "tasks.base", "ClassificationTask": "tasks.kinds", "BinaryTask": "tasks.kinds",
    "RegressionTask": "tasks.kinds", "ClassTask": "tasks.kinds", "PointTask": "tasks.point",
    "Records": "data.records", "TensorData": "data.records",
    "Backbone": "features.backbones", "BackboneFusion": "features.backbones",
    "FeatureCache": "features.cache", "extract_features": "features.cache",
    "ResidualSharedTrunk": "model.trunk", "MultiTaskModel": "model.network", "create_model": "model.network",
    "LossComposer": "train.losses", "LossOutput": "train.losses", "Weighting": "train.losses",
    "WEIGHTINGS": "train.losses", "GradientWeighting": "train.gradients", "ARCHITECTURES": "model.sharing",
    "Trainer": "train.trainer", "TrainSettings": "train.trainer",
    "TrainConfig": "config", "History": "train.state",
    "evaluate_outputs": "evaluate.scores",
    "Plugin": "plugins.contract", "load_plugin": "plugins.contract", "list_plugins": "plugins.contract",
    "check_plugin": "plugins.conformance", "ConformanceReport": "plugins.conformance",
    "run": "workflow.api", "RunOutcome": "workflow.api", "save_run": "workflow.api", "predict": "workflow.api",
    "load_run": "workflow.predict", "LoadedRun": "workflow.predict", "predict_images": "workflow.predict",
    "export_run": "workflow.deploy", "explain_images": "workflow.explaining",
}
#: the layers, lowest first: a module imports its own room and lower layers only (tests/core/test_layers.py)
LAYERS = {
    "errors": 0, "registry": 1, "config": 2, "accel": 2, "distributed": 2,
    "io": 3, "tasks": 4, "data": 5, "features": 6, "model": 7,
    "train": 8, "evaluate": 8, "plugins": 8, "export": 8, "explain": 8,
    "report": 9, "workflow": 10, "scaffold": 10, "cli": 11,
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mtl_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
