"""Run configuration: frozen pydantic v2 models with ``extra="forbid"`` (:mod:`.models`), loaded from YAML/JSON and
dotted overrides (:mod:`.loading`) within fixed limits (:mod:`.limits`, docs/limits.md).

A validated config never changes: code that needs other settings makes a copy (``model_copy(update=...)`` of the
section). A config with several mistakes reports all of them at once, each with its location.
"""

from .limits import MAX_ALIASES, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, MAX_OVERRIDE_CHARS, SHOWN_CHARS, short_repr
from .loading import (
    MAX_PROBLEMS_SHOWN,
    apply_overrides,
    config_file,
    describe_errors,
    format_problems,
    load_config,
    load_yaml,
    read_raw,
    validate_model,
)
from .models import (
    AUGMENTATIONS,
    AugmentConfig,
    ComputeConfig,
    DataConfig,
    EvaluationConfig,
    FallbackConfig,
    LabelSmoothing,
    LossConfig,
    ModelConfig,
    RunConfig,
    SplitConfig,
    Strict,
    TaskOverride,
    TrainConfig,
    TrunkConfig,
    check_label_smoothing,
    threshold_target,
)

__all__ = [
    "AUGMENTATIONS", "AugmentConfig", "ComputeConfig", "DataConfig", "EvaluationConfig", "FallbackConfig",
    "LabelSmoothing", "LossConfig", "MAX_ALIASES", "MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "MAX_OVERRIDE_CHARS",
    "MAX_PROBLEMS_SHOWN", "ModelConfig", "RunConfig", "SHOWN_CHARS", "SplitConfig", "Strict", "TaskOverride",
    "TrainConfig", "TrunkConfig", "apply_overrides", "check_label_smoothing", "config_file", "describe_errors",
    "format_problems", "load_config", "load_yaml", "read_raw", "short_repr", "threshold_target", "validate_model",
]
