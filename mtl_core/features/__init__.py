"""Backbones, where their weights come from, their fusion, and the cache of extracted features."""

from __future__ import annotations

from .backbones import Backbone, BackboneFusion, BackboneInfo
from .cache import FeatureCache, extract_features
from .fusion import LazyFusion, build_fusion, create_fusion, recall_fusion
from .memo import library_versions
from .memory import check_features_fit
from .names import backbone_source
from .weights import pretrained_available, pretrained_file

__all__ = [
    "Backbone", "BackboneFusion", "BackboneInfo", "FeatureCache", "LazyFusion", "build_fusion", "backbone_source",
    "check_features_fit", "create_fusion", "extract_features", "library_versions", "pretrained_available",
    "pretrained_file", "recall_fusion"
]
