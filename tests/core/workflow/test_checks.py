"""The checks before extraction: `mtl validate` refuses what `mtl run` refuses, with the same line, and the run stops
before a single feature is extracted.

Each bad input is an override of the shapes example (the built-in ``table`` plugin, timm's tiny test models with
random weights, a 60-image synthetic data set): the table below lists what the checks catch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_core.cli import EXIT_USER_ERROR, main
from mtl_core.config import load_config
from mtl_core.errors import ConfigError
from mtl_core.workflow import check_run

SHAPES = Path(__file__).resolve().parents[3] / "examples" / "shapes"
# 60 images of 15 subjects, one epoch: a run that passed every check by mistake would still end in seconds.
FAST = ["plugin_options.synthetic.n=60", "train.epochs=1", "data.image_size=32"]

#: bad override(s) -> words the one error line must contain (what was received and how to fix it)
BAD = {
    "unknown loss strategy": (["loss.strategy=uncertanty"], "unknown weighting strategy 'uncertanty'. Did you mean "
                                                            "'uncertainty'?"),
    "unknown backbone": (["model.backbones=[test_resnt]"], "unknown backbone 'test_resnt'. Did you mean "
                                                           "'test_resnet'"),
    "two unknown backbones": (["model.backbones=[test_resnt,tset_efficientnet]"],
                              "model.backbones: unknown backbone 'test_resnt'. Did you mean 'test_resnet'"),
    "unknown fallback backbone": (["fallback={backbones: [test_resnt]}"], "unknown backbone 'test_resnt'"),
    "repeated backbone": (["model.backbones=[test_resnet,test_resnet]"], "backbone names must be unique"),
    "weights for another backbone": (["model.weights={test_resnt: random}"],
                                     "weights given for 'test_resnt', which is not among the backbones"),
    "missing weights file": (["model.weights={test_resnet: /no/such/file.safetensors}"],
                             "weights file /no/such/file.safetensors does not exist"),
    "no pretrained weights and on_missing_weights error": (
        ["model.weights=pretrained", "model.on_missing_weights=error"],
        "no pretrained weights for backbone 'test_resnet' in the local caches and downloads are off"),
    "unknown task override": (["tasks.shap.weight=2"], "unknown task 'shap'. Did you mean 'shape'?"),
    "label smoothing on a regression task": (["tasks.count.label_smoothing=0.1"],
                                             "task 'count' is a regression task, which has no label smoothing"),
    "label smoothing out of range": (["tasks.shape.label_smoothing=1.5"], "tasks.shape.label_smoothing"),
    "unknown plugin option": (["plugin_options.tabel=x"], "plugin_options of 'table': tabel: Extra inputs"),
    "unknown plugin": (["plugin=tabel"], "unknown plugin 'tabel'. Did you mean 'table'?"),
    "not a device": (["train.device=gpu"], "train.device: 'gpu' is not a device"),
    "augmentation the plugin declares unsafe": (
        ["model.frozen=false", "train.augment.enabled=true", "train.augment.transforms=[flip_lr]"],
        "train.augment.transforms: 'flip_lr' is not label-safe for plugin 'table'"),
    "more folds than subjects": (["evaluation.folds=40"], "folds must be between 2 and the number of groups (15), "
                                                          "got 40"),
    "map levels beyond the backbone": (["model.pooling=map", "model.map_levels=9"],
                                       "backbone 'test_resnet' offers 5 feature level(s), got 9; set model.map_levels "
                                       "to at most 5"),
    "every config error at once": (["train.lr=-1", "model.backbones=[]", "train.epoch=3"],
                                   "3 problems: model.backbones: List should have at least 1 item"),
}


#: found by building the backbones: validate builds them, the run right after its checks (its run folder is open)
BUILT = {"map levels beyond the backbone"}


@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory) -> Path:
    """A cache holding the small synthetic shapes data set (what `mtl run` generates on first use), no features."""
    root = tmp_path_factory.mktemp("checks-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTL_CACHE_DIR", str(root))
        checked = check_run(load_config(SHAPES, FAST), synthesize=True, say=lambda _: None)
    assert checked.records is not None and len(checked.records) == 60
    return root


@pytest.fixture
def cache(shapes_cache, monkeypatch) -> Path:
    monkeypatch.setenv("MTL_CACHE_DIR", str(shapes_cache))
    return shapes_cache


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _features(cache: Path) -> list[Path]:
    return [p for p in (cache / "features").rglob("*") if p.is_file()] if (cache / "features").exists() else []


def _sets(overrides: list[str]) -> list[str]:
    return [item for value in [*FAST, *overrides] for item in ("--set", value)]


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_and_run_refuse_the_same_input_with_the_same_line_before_extraction(case, cache, tmp_path, capsys):
    overrides, words = BAD[case]
    assert main(["validate", str(SHAPES), *_sets(overrides)]) == EXIT_USER_ERROR
    checked = _error_lines(capsys.readouterr().err)
    assert main(["run", str(SHAPES), *_sets(overrides), "--output", str(tmp_path / "out")]) == EXIT_USER_ERROR
    ran = _error_lines(capsys.readouterr().err)
    assert len(checked) == 1 and words in checked[0], checked
    assert ran == checked
    out = tmp_path / "out"
    assert not _features(cache) and not (out / "metrics.json").exists() and not (out / "predictions.csv").exists()
    assert case in BUILT or not out.exists()  # refused before the run folder is opened


def test_a_sound_config_passes_and_says_what_a_run_would_use(cache, capsys):
    assert main(["validate", str(SHAPES), *_sets([])]) == 0
    out = capsys.readouterr().out
    assert "ok: plugin 'table', 3 tasks (shape, count, size), backbones test_resnet, test_efficientnet at 32 px" in out
    assert "data: 60 cases in" in out and "one held-out split" in out
    assert not _features(cache)


def test_validate_without_data_at_hand_checks_the_config_and_says_the_data_was_not_checked(tmp_cache, capsys):
    assert main(["validate", str(SHAPES), *_sets(["evaluation.folds=40"])]) == 0  # the folds need the cases
    assert "data: not checked" in capsys.readouterr().out
    assert not (tmp_cache / "synthetic").exists()  # validate generates nothing
    assert main(["validate", str(SHAPES), *_sets(["loss.strategy=nope"])]) == EXIT_USER_ERROR


def test_check_run_returns_the_model_a_run_uses(cache):
    checked = check_run(load_config(SHAPES, [*FAST, "tasks.size.enabled=false", "tasks.shape.weight=2"]))
    assert [t.name for t in checked.tasks] == ["shape", "count"] and checked.tasks[0].weight == 2.0
    assert checked.model.backbones == ["test_resnet", "test_efficientnet"] and checked.image_size == 32
    assert checked.fallback is None and checked.records is not None


def test_the_fallback_replaces_a_model_without_pretrained_weights(cache):
    config = load_config(SHAPES, [*FAST, "model.weights=pretrained",
                                  "fallback={backbones: [mtl_small_cnn], image_size: 48, reason: tiny}"])
    checked = check_run(config)
    assert checked.model.backbones == ["mtl_small_cnn"] and checked.image_size == 48
    assert checked.model.weights == {"mtl_small_cnn": "random"}
    assert "no pretrained weights for test_resnet, test_efficientnet" in checked.fallback
    assert config.model.backbones == ["test_resnet", "test_efficientnet"]  # the config itself is unchanged


def test_a_config_is_frozen():
    config = load_config(SHAPES, FAST)
    with pytest.raises(ValueError, match="frozen"):
        config.train.lr = 1.0  # type: ignore[misc]


def test_several_unknown_backbones_are_listed_at_once(cache):
    with pytest.raises(ConfigError) as info:
        check_run(load_config(SHAPES, [*FAST, "model.backbones=[test_resnt,tset_efficientnet]"]))
    assert "'test_resnt'" in str(info.value) and "'tset_efficientnet'" in str(info.value)



def test_features_that_cannot_fit_are_refused_once_the_backbones_were_built_before(cache, monkeypatch):
    from mtl_core.features import create_fusion, memory

    checked = check_run(load_config(SHAPES, FAST))
    create_fusion(checked.model, checked.image_size, 0)  # a first run remembers the backbones' description
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(ConfigError, match="the feature matrix of 60 images would take .* more than 70% of the 1 KB"):
        check_run(load_config(SHAPES, FAST))
    assert not _features(cache)
