"""Where a model looked: Grad-CAM / Grad-CAM++ (monai.visualize) per task over each backbone's last feature map,
fused; a point task's own heatmap; overlays drawn on the images."""

from __future__ import annotations

from .overlay import overlay, write_overlay
from .saliency import METHODS, ExplainError, Saliency, class_index, feature_layer, find_task, saliency, saliency_maps

__all__ = ["METHODS", "ExplainError", "Saliency", "class_index", "feature_layer", "find_task", "overlay", "saliency",
           "saliency_maps", "write_overlay"]
