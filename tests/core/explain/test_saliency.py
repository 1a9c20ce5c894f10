"""Saliency maps on a model over tiny random backbones (one timm, one of the engine's own): their shape and range,
a point task's heatmap, the model left as it was (mode, outputs, no hooks, frozen weights), and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core import BackboneFusion, BinaryTask, ClassificationTask, PointTask, RegressionTask, create_model
from mtl_core.explain import ExplainError, class_index, feature_layer, find_task, overlay, saliency, saliency_maps

SIZE = 32


@pytest.fixture(scope="module")
def model_and_tasks():
    torch.manual_seed(0)
    tasks = [ClassificationTask("kind", classes=["a", "b", "c"]), RegressionTask("size"), BinaryTask("flag"),
             PointTask("spot", frame=(SIZE, SIZE))]
    for task in tasks[:3]:
        task.fit(np.array([0.0, 1.0, 2.0, 1.0]) if task.name == "kind" else np.array([0.0, 1.0, 1.0, 0.0]))
    fusion = BackboneFusion(["test_resnet", "mtl_small_cnn"], weights="random", image_size=SIZE, pooling="map",
                            map_size=4, map_levels=1)
    return create_model(fusion, tasks, {"hidden": 8, "depth": 1}).eval(), tasks


@pytest.mark.parametrize("name", ["kind", "size", "flag"])
def test_gradcam_maps_are_image_sized_in_unit_range_and_leave_the_model_alone(model_and_tasks, name):
    model, tasks = model_and_tasks
    images = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        before = model(images)[name].clone()
    found = saliency_maps(model, find_task(tasks, name), images, method="gradcampp" if name == "flag" else "gradcam")
    assert len(found) == 3
    for item in found:
        assert item.map.shape == (SIZE, SIZE) and item.map.dtype == np.float32
        assert 0.0 <= item.map.min() and item.map.max() <= 1.0
    assert found[0].target == ("value" if name == "size" else found[0].target)
    assert not model.training and model.fusion.frozen
    assert not any(p.requires_grad for p in model.fusion.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(images)[name], before)


def test_the_predicted_class_is_explained_unless_one_is_asked(model_and_tasks):
    model, tasks = model_and_tasks
    image = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        predicted = tasks[0].classes[int(model(image)["kind"].argmax())]
    assert saliency(model, tasks[0], image).target == predicted
    assert saliency(model, tasks[0], image, "c").target == "c"
    assert saliency(model, tasks[2], image, "1").target == "positive"


def test_a_point_task_shows_its_heatmap(model_and_tasks):
    model, tasks = model_and_tasks
    image = torch.rand(1, 1, SIZE, SIZE)
    found = saliency(model, tasks[3], image)
    with torch.no_grad():
        heat = torch.sigmoid(model(image)["spot"][0, 0])  # (4, 4)
    assert found.method == "heatmap" and found.map.shape == (SIZE, SIZE)
    assert found.map.max() <= float(heat.max()) + 1e-6 and found.map.min() >= float(heat.min()) - 1e-6


def test_overlay_keeps_the_image_where_nothing_is_salient():
    image = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    rgb = overlay(image, np.zeros((16, 16)))
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], np.round(image * 255).astype(np.uint8))


def test_target_layers_and_errors_are_one_line(model_and_tasks):
    model, tasks = model_and_tasks
    assert [feature_layer(b) for b in model.fusion.backbones] == ["layer4", "stages.3"]
    with pytest.raises(ExplainError, match="Did you mean 'kind'"):
        find_task(tasks, "kimd")
    with pytest.raises(ExplainError, match="class of task 'kind'"):
        class_index(tasks[0], "d")
    with pytest.raises(ExplainError, match="without classes"):
        class_index(tasks[1], "a")
    with pytest.raises(ExplainError, match="saliency method"):
        saliency(model, tasks[0], torch.rand(1, 1, SIZE, SIZE), method="lime")
