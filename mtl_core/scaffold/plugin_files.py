"""The files of a new plugin package, as ``string.Template`` texts (``$name``, ``$module``, ``$cls``, ``$dist``).

The generated plugin imports only names that ``mtl_core`` exports, follows the house style, and runs offline as it
is: its ``synthetic_data`` writes a small data set of discs and squares (task ``shape``) of some size in pixels
(task ``size``), with a few missing labels. ``tests/e2e/test_init.py`` installs it, checks it and runs its example.
"""

from __future__ import annotations

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$title: an mtl plugin."
requires-python = ">=3.10"
dependencies = ["mtl-core"]

# The engine finds plugins in this group; `plugin: $name` in a config names this entry point.
[project.entry-points."mtl.plugins"]
$name = "$module.plugin:${cls}Plugin"

[tool.setuptools.packages.find]
include = ["$module*"]

[tool.ruff]
line-length = 120

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP"]
'''

README = '''\
# $dist

An mtl plugin written by `mtl init plugin $name`. It runs as it is on a small synthetic
data set (discs and squares: task `shape`, and their size in pixels: task `size`); replace the reader and the
tasks with those of your data.

```console
$$ pip install -e .  # offline: add --no-build-isolation
$$ mtl plugins check $name  # the engine's contract, on the synthetic data
$$ mtl run example  # trains and evaluates; the run folder is runs/$name
$$ mtl run example --data path/to/your/data
$$ pytest tests
```

- `$module/plugin.py`: the options (`plugin_options`), the tasks and the reader of `labels.csv`.
- `$module/synthetic.py`: the synthetic data set (delete it, and `synthetic_data`, once you have data).
- `example/config.yaml`: a tiny run configuration (see docs/configuration.md for every key).
'''

INIT = '''\
"""$title: an mtl plugin (see docs/write-a-plugin.md)."""
'''

PLUGIN = '''\
"""$title: images with one disc or square (task 'shape') of some size in pixels (task 'size').

The data folder holds ``labels.csv`` with the columns ``file, shape, size`` and the images it names; an empty cell
is a missing label. Replace the tasks and ``load_records`` with those of your data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mtl_core import (
    ClassificationTask,
    DataError,
    LabelSmoothing,
    Plugin,
    Records,
    RegressionTask,
    Strict,
    Task,
    validate_model,
)
from pydantic import Field

from .synthetic import SHAPES, write_synthetic

TABLE = "labels.csv"
COLUMNS = ("file", "shape", "size")


class ${cls}Options(Strict):
    """The config's ``plugin_options`` (a misspelt option is an error that names it)."""

    label_smoothing: LabelSmoothing = Field(0.0, description="epsilon of the shape task")
    n: int = Field(48, ge=12, description="number of images in the synthetic data set")
    image_size: int = Field(32, ge=16, le=1024, description="side of the synthetic images in pixels")
    seed: int = Field(0, description="seed of the synthetic data set (the same seed, the same files)")


class ${cls}Plugin(Plugin):
    """A folder with labels.csv (file, shape, size) and the images it names."""

    name = "$name"
    Options = ${cls}Options
    stratify_key = "shape"  # a key of Records.strata: the split keeps the class proportions

    def tasks(self) -> list[Task]:
        """The tasks, with their default loss weights."""
        return [ClassificationTask("shape", classes=list(SHAPES), label_smoothing=self.options.label_smoothing),
                RegressionTask("size", unit="px")]

    def load_records(self, data_dir: Path) -> Records:
        """Read labels.csv; NaN where a label is missing; a bad cell is an error naming its line."""
        path = Path(data_dir) / TABLE
        if not path.is_file():
            raise DataError(f"{path} is missing; expected a CSV with the columns {', '.join(COLUMNS)}")
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # every cell as text, '' when empty
        lacking = [column for column in COLUMNS if column not in table.columns]
        if lacking:
            raise DataError(f"{path} lacks the column(s) {', '.join(lacking)}; expected {', '.join(COLUMNS)}")
        shape = [_class_index(row.shape, path, line) for line, row in enumerate(table.itertuples(), start=2)]
        size = [_number(row.size, path, line) for line, row in enumerate(table.itertuples(), start=2)]
        return Records(ids=list(table["file"]), paths=[Path(data_dir) / name for name in table["file"]],
                       targets={"shape": np.array(shape), "size": np.array(size)},
                       strata={"shape": table["shape"].to_numpy(object)})

    def synthetic_data(self, out_dir: Path, **overrides) -> Path:
        """Write the synthetic data set (options updated by ``overrides``, as `mtl synthesize` passes them)."""
        options = validate_model(${cls}Options, self.options.model_dump() | overrides, "$name options")
        return write_synthetic(Path(out_dir), n=options.n, image_size=options.image_size, seed=options.seed)


def _class_index(cell: str, path: Path, line: int) -> float:
    """The class index of a shape cell; NaN when empty."""
    if not cell:
        return np.nan  # a missing label: masked out of this task, the case still trains the others
    if cell not in SHAPES:
        raise DataError(f"{path}: line {line}: shape {cell!r}, expected one of {', '.join(SHAPES)} or empty")
    return float(SHAPES.index(cell))


def _number(cell: str, path: Path, line: int) -> float:
    """A size cell as a number; NaN when empty."""
    try:
        return float(cell) if cell else np.nan
    except ValueError:
        raise DataError(f"{path}: line {line}: size {cell!r}, expected a number or empty") from None
'''

SYNTHETIC = '''\
"""A small synthetic data set, so that `mtl run` works without any data (the same seed, the same files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SHAPES = ("disc", "square")


def write_synthetic(out_dir: Path, n: int, image_size: int, seed: int) -> Path:
    """Write ``n`` grey images and labels.csv into ``out_dir`` (once: labels.csv is written last)."""
    if (out_dir / "labels.csv").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:image_size, :image_size] - image_size / 2
    rows = []
    for i in range(n):
        shape, side = SHAPES[i % 2], int(rng.integers(image_size // 5, image_size // 2))
        if shape == "disc":
            inside = yy**2 + xx**2 <= (side / 2) ** 2
        else:
            inside = np.maximum(abs(yy), abs(xx)) <= side / 2
        pixels = np.clip(rng.normal(0.3, 0.05, (image_size, image_size)) + 0.5 * inside, 0.0, 1.0)
        name = f"case_{i:03d}.png"
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out_dir / name)
        unlabelled = rng.random() < 0.1  # some cases lack a shape label: masked, never guessed
        rows.append({"file": name, "shape": "" if unlabelled else shape, "size": side})
    pd.DataFrame(rows).to_csv(out_dir / "labels.csv", index=False)
    return out_dir
'''

CONFIG = '''\
# A tiny run of the $name plugin: the engine's small CNN at 32 px, a few epochs, seconds on a CPU.
# For real work: ImageNet backbones (model.backbones: [tf_efficientnet_lite0], weights: pretrained, image_size: 224)
# and your data (data.path, or --data). Every key: docs/configuration.md.
plugin: $name                    # the entry-point name in pyproject.toml
plugin_options: {n: 48, image_size: 32}
data: {image_size: 32}           # no data.path: `mtl run` trains on the plugin's synthetic data
model:
  backbones: [mtl_small_cnn]
  weights: random
  trunk: {hidden: 32, depth: 1}
train: {epochs: 5, batch_size: 16, lr: 1.0e-3, patience: 5}
output: runs/$name               # relative to the folder you run mtl in
'''

TEST = '''\
"""The $name plugin meets the engine's contract and reads its table as documented."""

import numpy as np
import pytest
from mtl_core import DataError, check_plugin, load_plugin


def test_passes_the_conformance_check():
    report = check_plugin("$name", {"n": 24})
    assert report.ok, report.format()


def test_an_empty_shape_is_a_missing_label(tmp_path):
    plugin = load_plugin("$name", {"n": 24})
    records = plugin.load_records(plugin.synthetic_data(tmp_path))
    records.validate(plugin.tasks())
    assert len(records) == 24
    assert np.isnan(records.targets["shape"]).any()  # unlabelled cases are masked...
    assert not np.isnan(records.targets["size"]).any()  # ...and still train the other task


def test_a_bad_label_names_its_line(tmp_path):
    plugin = load_plugin("$name", {"n": 24})
    folder = plugin.synthetic_data(tmp_path)
    lines = (folder / "labels.csv").read_text().splitlines()
    cells = lines[3].split(",")  # line 4 of the file: file, shape, size
    lines[3] = ",".join([cells[0], "hexagon", cells[2]])
    (folder / "labels.csv").write_text("\\n".join(lines) + "\\n")
    with pytest.raises(DataError, match="line 4: shape 'hexagon'"):
        plugin.load_records(folder)
'''
