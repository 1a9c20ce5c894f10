"""mtl_core: a generic engine for multi-task deep learning on medical images.

Tasks with missing-label masks, backbone fusion, a residual shared trunk, per-task heads, weighted-loss
composition, training on cached features, evaluation and plugins. Heavy modules load lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MTLError": "errors", "ConfigError": "errors", "DataError": "errors", "PluginError": "errors",
    "WeightsError": "errors", "RunError": "errors",
    "Registry": "registry",
    "Task": "tasks", "ClassificationTask": "tasks", "BinaryTask": "tasks", "RegressionTask": "tasks",
    "ClassTask": "tasks", "TaskSchema": "tasks", "TASK_KINDS": "tasks", "register_task_kind": "tasks",
    "task_from_schema": "tasks", "PointTask": "point_task",
    "Backbone": "backbones", "BackboneFusion": "backbones",
    "ResidualSharedTrunk": "trunk", "MultiTaskModel": "model",
    "LossComposer": "losses", "LossOutput": "losses", "Weighting": "losses", "WEIGHTINGS": "losses",
    "Trainer": "trainer", "TrainSettings": "trainer", "History": "trainer",
    "Records": "data", "TensorData": "data",
    "FeatureCache": "features", "extract_features": "features",
    "RunConfig": "config", "load_config": "config",
    "Plugin": "plugins", "load_plugin": "plugins", "list_plugins": "plugins",
    "read_image": "imaging",
    "evaluate_outputs": "evaluation",
    "check_plugin": "conformance", "ConformanceReport": "conformance",
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
