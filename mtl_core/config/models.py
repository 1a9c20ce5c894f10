"""The run configuration's models: frozen pydantic v2 models with ``extra="forbid"``, one per config section.

A validated config never changes: code that needs other settings makes a copy (``model_copy(update=...)`` of the
section).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..errors import ConfigError
from .limits import short_repr


class Strict(BaseModel):
    """Base of every config model (run configs, plugin options): unknown keys are errors, and a validated model is
    frozen (copy it with ``model_copy(update=...)`` to change a setting).

    Example:
        >>> class MyOptions(Strict):
        ...     size: int = 64
        >>> MyOptions(size=32).size
        32
    """

    # allow_inf_nan=False: ``lr: .inf`` or ``nan`` is refused when validated, not trained on (a NaN loss later)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: epsilon of label smoothing, ``(1 - eps) * one_hot + eps / K``: the one rule every task, override and option uses
LabelSmoothing = Annotated[float, Field(ge=0.0, lt=1.0)]
_LABEL_SMOOTHING = TypeAdapter(LabelSmoothing)


def check_label_smoothing(value: Any, where: str) -> float:
    """``value`` if it is a valid label-smoothing epsilon (:data:`LabelSmoothing`), else a :class:`ConfigError`."""
    try:
        return _LABEL_SMOOTHING.validate_python(value)
    except ValidationError as exc:
        raise ConfigError(f"{where}: label_smoothing must be in [0, 1), got {short_repr(value)} "
                          f"({exc.errors()[0]['msg']})") from None


class TrunkConfig(Strict):
    """The shared trunk: hard sharing (the residual trunk) or another sharing architecture (docs/methods.md)."""

    architecture: str = Field("residual", description="sharing architecture: residual (hard sharing), mmoe "
                                                      "(multi-gate mixture of experts), adapters (a residual "
                                                      "adapter per task)")
    hidden: int = Field(512, ge=1, description="width of fc1 and of every residual block")
    depth: int = Field(2, ge=0, description="number of residual blocks")
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the fused features before fc1")
    norm: Literal["none", "batch", "layer"] = "none"
    residual: bool = Field(True, description="false turns the skip connections off (ablation)")
    experts: int = Field(4, ge=1, description="mmoe: number of experts")
    adapter_width: int = Field(64, ge=1, description="adapters: bottleneck width of each task's adapter")


class ModelConfig(Strict):
    """Backbones, their fusion, and the trunk."""

    backbones: list[str] = Field(default_factory=lambda: ["densenet161", "efficientnet_b7"], min_length=1)
    weights: str | dict[str, str] = Field("pretrained", description="'pretrained', 'random', or name -> file")
    on_missing_weights: Literal["random", "error"] = "random"
    allow_download: bool = Field(False, description="let timm/torchvision download pretrained weights")
    pooling: Literal["avg", "grid", "map"] = "avg"
    grid: int = Field(2, ge=1, le=16, description="grid x grid average pooling when pooling is 'grid'")
    map_size: int = Field(32, ge=4, le=128, description="side of the common grid every kept feature map is brought "
                                                        "to when pooling is 'map'")
    map_levels: int = Field(3, ge=1, description="how many of each backbone's deepest feature levels pooling 'map' "
                                                 "keeps (1 for torchvision and engine backbones)")
    share_heatmap: bool = Field(False, description="global heads also read each point task's heatmap peak (max and "
                                                   "log-sum-exp of its logits); needs pooling 'map'")
    frozen: bool = Field(True, description="frozen backbones: features are extracted once and cached")
    trainable_stages: int | None = Field(
        None, ge=1, description="with frozen false: train only the last N stages of each backbone (the earlier "
                                "ones and their batch-norm statistics stay as loaded); null: every stage")
    standardize_features: bool = Field(True, description="z-score each fused feature with training statistics")
    trunk: TrunkConfig = Field(default_factory=TrunkConfig)

    @field_validator("trainable_stages")
    @classmethod
    def _stages_need_training(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("frozen", True):
            raise PydanticCustomError("frozen_stages", "frozen backbones train no stage; set model.frozen: false "
                                                       "or remove model.trainable_stages")
        return value


class FallbackConfig(Strict):
    """Model settings used instead when pretrained weights were asked for but cannot be had."""

    backbones: list[str] | None = None
    pooling: Literal["avg", "grid", "map"] | None = None
    grid: int | None = Field(None, ge=1, le=16)
    map_size: int | None = Field(None, ge=4, le=128)
    map_levels: int | None = Field(None, ge=1)
    image_size: int | None = Field(None, ge=16)
    trunk: TrunkConfig | None = None
    reason: str = ""


class TaskOverride(Strict):
    """Per-task settings that override the plugin's defaults."""

    weight: float | None = Field(None, ge=0.0)
    label_smoothing: LabelSmoothing | None = None
    enabled: bool = True


class LossConfig(Strict):
    """Weighted-loss composition."""

    strategy: str = Field("static", description="weighting strategy or gradient method (docs/methods.md): static, "
                                                "equal, uncertainty, dwa, rlw, famo, gradnorm, mgda, mgda_ub, pcgrad, "
                                                "cagrad, imtl, gradvac, nash_mtl, aligned_mtl, ...")


#: The augmentations ``train.augment.transforms`` may name (:mod:`mtl_core.data.augment` builds them with MONAI).
AUGMENTATIONS = ("flip_lr", "flip_ud", "rotate", "scale", "translate", "intensity", "contrast", "noise")


class AugmentConfig(Strict):
    """On-the-fly augmentation of training images when backbones are trained (MONAI dictionary transforms; point
    targets move with the image). Only transforms the plugin declares label-safe are allowed."""

    enabled: bool = Field(False, description="augment training images (needs model.frozen: false)")
    transforms: list[str] | None = Field(
        None, description="which ones: flip_lr, flip_ud, rotate, scale, translate, intensity, contrast, noise; "
                          "null: every one the plugin declares label-safe")
    probability: float = Field(0.5, ge=0.0, le=1.0, description="chance that each transform acts on an image")
    rotate_degrees: float = Field(10.0, ge=0.0, le=180.0, description="largest rotation either way")
    translate: float = Field(0.05, ge=0.0, lt=0.5, description="largest shift, as a fraction of the image side")
    scale: float = Field(0.1, ge=0.0, lt=1.0, description="largest zoom in or out, as a fraction")
    intensity: float = Field(0.1, ge=0.0, le=1.0, description="largest relative change of brightness")
    contrast: float = Field(0.3, ge=0.0, lt=1.0, description="gamma drawn in [1 - contrast, 1 + contrast]")
    noise_std: float = Field(0.02, ge=0.0, le=1.0, description="standard deviation of the Gaussian noise")

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in AUGMENTATIONS:
                close = [a for a in AUGMENTATIONS if a.split("_")[0] in name or name in a]
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise PydanticCustomError("augmentation", "unknown augmentation {name}.{hint} Available: {names}",
                                          {"name": short_repr(name), "hint": hint, "names": ", ".join(AUGMENTATIONS)})
        return value


class TrainConfig(Strict):
    """Optimisation (docs/finetuning.md explains the fine-tuning settings)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(15, ge=1)
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="autocast of training and fine-tuning (fp16 with a gradient scaler); auto: bf16 on "
                            "CUDA, fp32 elsewhere")
    optimizer: Literal["adam", "adamw"] = Field(
        "adam", description="adamw: decoupled weight decay (Loshchilov & Hutter 2019), the usual one for fine-tuning")
    backbone_lr_scale: float = Field(0.1, gt=0.0, le=10.0, description="trained backbones with pretrained or file "
                                                                       "weights learn at lr times this; randomly "
                                                                       "initialised ones, the trunk and heads at lr")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate after the warm-up: constant, or cosine decay to zero at the last "
                                "epoch (Loshchilov & Hutter 2017)")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up of the learning rate over this many epochs")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm to this; null: never")
    accumulate: int = Field(1, ge=1, description="batches whose gradients add up before each optimiser step "
                                                 "(effective batch: batch_size x accumulate)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class SplitConfig(Strict):
    """Held-out split (stratified on the plugin's stratification key)."""

    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="fraction of the training part for early stop")
    seed: int = 0


class EvaluationConfig(Strict):
    """How results are measured."""

    folds: int = Field(1, ge=1, description="1: one held-out split; K >= 2: stratified K-fold cross-validation")
    repeats: int = Field(1, ge=1, description="repetitions of the K folds with other shuffles")
    single_task_baselines: bool | Literal["auto"] = Field(
        "auto", description="also train one model per task for Delta_m; 'auto': only with cross-validation")
    threshold: str = Field(
        "youden", description="decision threshold of the sensitivity and specificity of class tasks, chosen on the "
                              "validation part: 'youden' (maximal sensitivity + specificity - 1) or 'sensitivity:S' "
                              "(the highest whose sensitivity is at least S, e.g. sensitivity:0.9); one per class "
                              "against the rest for a classification task")
    saliency_images: int = Field(
        3, ge=0, le=16, description="report.html: saliency overlays (Grad-CAM; a point task's heatmap) of this many "
                                    "held-out images per task, beside their prediction and truth; 0: none")

    @field_validator("threshold")
    @classmethod
    def _known_threshold(cls, value: str) -> str:
        threshold_target(value)
        return value

    def wants_single_task(self) -> bool:
        """Whether single-task baselines are trained."""
        return self.folds > 1 if self.single_task_baselines == "auto" else bool(self.single_task_baselines)


def threshold_target(rule: str) -> float | None:
    """The target sensitivity of an ``evaluation.threshold`` rule, None for ``youden``; a pydantic error (one line
    in a config message) for anything else."""
    name, _, target = rule.partition(":")
    if rule == "youden":
        return None
    try:
        value = float(target) if name == "sensitivity" else float("nan")
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise PydanticCustomError("threshold_rule", "use 'youden' or 'sensitivity:S' with S in (0, 1], e.g. "
                                                    "sensitivity:0.9")
    return value


class DataConfig(Strict):
    """Where the data is and how images are prepared."""

    path: str | None = Field(None, description="data folder; relative paths are relative to the config file")
    image_size: int = Field(224, ge=16)
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="batch size of feature extraction; auto: 256 on CUDA, 16 elsewhere")
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader workers for decoding and resizing; auto: one per spare CPU core (at "
                                  "most 8) on CUDA, none on the CPU, where the backbones are the bottleneck")
    cache_inputs: bool = Field(
        False, description="keep every decoded, resized image in the cache (float32: 200 KB per image at 224 px) "
                           "so that later runs with other backbones, mtl compare or fine-tuning skip decoding")
    split: SplitConfig = Field(default_factory=SplitConfig)


class ComputeConfig(Strict):
    """How feature extraction uses the hardware (docs/performance.md has the measured effect of each)."""

    precision: Literal["auto", "fp32", "tf32", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA (fp16 where the card lacks bf16), fp32 elsewhere; part "
                            "of the feature cache key")
    channels_last: bool | Literal["auto"] = Field("auto", description="NHWC memory format; auto: on CUDA")
    compile: bool = Field(False, description="torch.compile the backbones (compilation takes minutes once per "
                                             "process; falls back to eager with a warning when it fails)")


class RunConfig(Strict):
    """Everything a run needs."""

    plugin: str = Field(..., description="installed plugin name, or 'path/to/file.py:ClassName'")
    plugin_options: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    fallback: FallbackConfig | None = None
    tasks: dict[str, TaskOverride] = Field(default_factory=dict)
    loss: LossConfig = Field(default_factory=LossConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: str = Field("runs/latest", description="output folder (overridden by --output)")

    @field_validator("train")
    @classmethod
    def _augment_needs_training(cls, value: TrainConfig, info: ValidationInfo) -> TrainConfig:
        model = info.data.get("model")
        if value.augment.enabled and model is not None and model.frozen:
            raise PydanticCustomError("augment_frozen", "augmentation needs trained backbones (frozen features are "
                                                        "extracted once, from the images as they are); set "
                                                        "model.frozen: false or train.augment.enabled: false")
        return value
