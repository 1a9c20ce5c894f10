"""Run figures (PNG) and the self-contained report.html: files, readable layout, content and escaping."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtl_core.report import figures, markdown_report
from mtl_core.report.figures import render_figures, write_figures
from mtl_core.report.html import caption, markdown_to_html, write_html

GRADES = ["grade one: barely visible", "grade two: faint opacity", "grade three: moderate opacity",
          "grade four: clearly visible mass", "grade five: large obvious mass", "not assessable / excluded"]
TASKS = [
    {"name": "grade", "kind": "classification", "unit": "", "classes": GRADES},
    {"name": "nodule", "kind": "binary", "unit": "", "classes": ["absent", "present"]},
    {"name": "diameter", "kind": "regression", "unit": "mm", "loss": "mse"},
]
N_PER_REPEAT = 48


def _predictions() -> pd.DataFrame:
    """Out-of-fold predictions of 4 folds, repeated twice; some labels missing."""
    rng = np.random.default_rng(0)
    frames = []
    for repeat in range(2):
        n = N_PER_REPEAT
        grade_true = rng.choice(GRADES, n).astype(object)
        grade_true[::7] = ""  # missing labels, as predictions.csv writes them
        diameter_true = rng.uniform(3, 30, n)
        diameter_true[::5] = np.nan
        frames.append(pd.DataFrame({
            "id": [f"case{i:03d}" for i in range(n)], "fold": np.arange(n) % 4, "repeat": repeat,
            "grade_true": grade_true, "grade_pred": rng.choice(GRADES, n),
            "nodule_true": rng.choice(["absent", "present"], n), "nodule_pred": rng.choice(["absent", "present"], n),
            "diameter_true": diameter_true, "diameter_pred": rng.uniform(3, 30, n)}))
    return pd.concat(frames, ignore_index=True)


def _history(epochs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    names = [t["name"] for t in TASKS]

    def losses(scale: float) -> list[dict]:
        rows = [{name: float(scale * (2.0 - e / epochs) + rng.uniform(0, 0.1)) for name in names}
                for e in range(epochs)]
        return [{"total": sum(row.values()), **row} for row in rows]

    weights = [{name: float(1.0 + 0.3 * k * e / epochs) for k, name in enumerate(names)} for e in range(epochs)]
    return {"train": losses(1.0), "val": losses(1.2), "weights": weights, "best_epoch": epochs // 2}


HISTORIES = [_history(12, 1), _history(9, 2)]


@pytest.fixture(scope="module")
def rendered():
    return render_figures(TASKS, _predictions(), HISTORIES)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, write_figures(run_dir, TASKS, _predictions(), HISTORIES)


def _shown_texts(fig) -> list:
    """Every text the canvas draws: tick labels of ticks inside the view, titles, axis labels, legends, cells."""
    from matplotlib.text import Text

    fig.canvas.draw()
    tick_labels, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(1.0, hi - lo)
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=True):
                tick_labels |= {id(tick.label1), id(tick.label2)}
                if ax.get_visible() and lo - eps <= loc <= hi + eps:
                    shown += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text().strip()]
            tick_labels |= {id(t.label1) for t in axis.get_minor_ticks()} | {id(t.label2) for t in
                                                                            axis.get_minor_ticks()}
    for text in fig.findobj(Text):
        if id(text) in tick_labels or not text.get_visible() or not text.get_text().strip():
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        shown.append(text)
    return shown


def layout_problems(fig) -> list[str]:
    """Texts that overlap each other or leave the canvas, as readable messages."""
    renderer = fig.canvas.get_renderer()
    texts = _shown_texts(fig)
    boxes = [t.get_window_extent(renderer) for t in texts]
    width, height = fig.bbox.width, fig.bbox.height
    problems = [f"{t.get_text()!r} leaves the figure ({b.x0:.0f},{b.y0:.0f})-({b.x1:.0f},{b.y1:.0f})"
                for t, b in zip(texts, boxes, strict=True)
                if b.x0 < -1 or b.y0 < -1 or b.x1 > width + 1 or b.y1 > height + 1]
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = boxes[i], boxes[j]
            if min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1:
                problems.append(f"{texts[i].get_text()!r} overlaps {texts[j].get_text()!r}")
    return problems


def test_layout_check_catches_crowded_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xticks(range(6), GRADES)
    ax.set_title("a title far too long to fit on a figure this narrow " * 2)
    problems = layout_problems(fig)
    assert any("overlaps" in p for p in problems) and any("leaves the figure" in p for p in problems)


def test_write_figures_writes_readable_pngs_in_report_order(written):
    run_dir, paths = written
    assert [p.name for p in paths] == ["confusion_grade.png", "confusion_nodule.png", "scatter_diameter.png",
                                       "learning_curves.png", "loss_weights.png"]
    for path in paths:
        assert path.parent == run_dir / "figures" and path.stat().st_size > 10_000
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 400
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # not a blank canvas


def test_figures_drawn_by_two_processes_equal_those_drawn_by_one(written, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "_can_fork", lambda: False)
    single = write_figures(tmp_path, TASKS, _predictions(), HISTORIES)
    assert [p.read_bytes() for p in single] == [p.read_bytes() for p in written[1]]


@pytest.mark.skipif(not figures._can_fork(), reason="no helper process on this platform")
def test_a_helper_process_that_dies_costs_no_figure(tmp_path, monkeypatch, caplog):
    import os

    parent, real = os.getpid(), figures._draw

    def draw(folder, stem, make):
        if os.getpid() != parent:
            os._exit(3)  # the helper dies after taking a figure, before writing it
        real(folder, stem, make)

    monkeypatch.setattr(figures, "_draw", draw)
    paths = write_figures(tmp_path, TASKS, _predictions(), HISTORIES)
    assert all(p.stat().st_size > 10_000 for p in paths) and "exit code 3" in caplog.text


def test_every_figure_has_no_overlapping_or_cut_text(rendered):
    for stem, fig in rendered:
        assert layout_problems(fig) == [], stem


def test_confusion_matrix_uses_labelled_cases_of_repeat_zero_only(rendered):
    fig = dict(rendered)["confusion_grade"]
    ax = fig.axes[0]
    frame = _predictions()
    labelled = frame[(frame["repeat"] == 0) & (frame["grade_true"] != "")]
    cells = np.array([int(t.get_text()) for t in ax.texts]).reshape(6, 6)
    assert cells.sum() == len(labelled)
    assert np.trace(cells) == (labelled["grade_true"] == labelled["grade_pred"]).sum()
    assert [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()] == GRADES
    assert f"accuracy {np.trace(cells) / cells.sum():.3f}" in ax.get_title()
    assert "first of 2 repeats only" in ax.get_title() and "4 folds" in ax.get_title()
    assert fig.get_size_inches()[0] > dict(rendered)["confusion_nodule"].get_size_inches()[0]


def test_scatter_has_units_identity_line_and_equal_axes(rendered):
    ax = dict(rendered)["scatter_diameter"].axes[0]
    frame = _predictions()
    frame = frame[(frame["repeat"] == 0) & frame["diameter_true"].notna()]
    mae = (frame["diameter_pred"] - frame["diameter_true"]).abs().mean()
    assert ax.get_xlabel() == "true diameter (mm)" and ax.get_ylabel() == "predicted diameter (mm)"
    assert f"MAE {mae:.4g} mm (n={len(frame)})" in ax.get_title()
    assert ax.get_xlim() == ax.get_ylim()
    identity = ax.lines[0].get_xydata()
    assert np.allclose(identity[:, 0], identity[:, 1])


def test_learning_curves_and_weights_follow_the_first_history(rendered):
    curves, weights = dict(rendered)["learning_curves"], dict(rendered)["loss_weights"]
    panels = [ax for ax in curves.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["total", "grade", "nodule", "diameter"]
    train, val = panels[0].lines[:2]
    assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
    assert list(train.get_xdata()) == list(range(1, 13))  # 12 epochs of fold 1, not the 9 of fold 2
    assert list(panels[0].lines[2].get_xdata()) == [7, 7]  # best epoch 6 (0-based) drawn at epoch 7
    assert "fold 1 of 2" in curves.get_suptitle()
    lines = weights.axes[0].lines
    assert len(lines) == 3 and lines[2].get_ydata()[-1] == pytest.approx(1.0 + 0.6 * 11 / 12)


def test_each_entry_gets_the_figure_its_kind_names():
    """Figures are picked by the kind's ``figure``: a component entry of kind regression gets a scatter, an entry
    of an unregistered kind gets none, and every figure name a kind may pick has a renderer."""
    from mtl_core.tasks import FIGURE_NAMES

    assert tuple(figures.RENDERERS) == FIGURE_NAMES
    frame = _predictions().assign(x_true=1.0, x_pred=2.0, mystery_true=1.0, mystery_pred=1.0)
    entries = [*TASKS, {"name": "x", "kind": "regression", "unit": "px"}, {"name": "mystery", "kind": "unknown"}]
    stems = [stem for stem, _ in figures.figure_plan(entries, frame, [])]
    assert stems == ["confusion_grade", "confusion_nodule", "scatter_diameter", "scatter_x"]


def _report_markdown() -> str:
    summary = {"plugin": "demo 1.0", "data": "/data/<b>&co", "note": "`a|b` & <script>alert(1)</script>"}
    metrics = {"tasks": {
        "grade": {"kind": "classification", "n": 41, "metrics": {"accuracy": 0.5, "f1_macro": 0.25,
                                                                  "f1_weighted": 0.4},
                  "baseline": {"accuracy": 0.2, "f1_macro": 0.1}},
        "diameter": {"kind": "regression", "unit": "mm", "n": 39, "metrics": {"mse": 12345.678, "mae": 3.25,
                                                                             "rmse": 4.0, "mse_scaled": 0.01,
                                                                             "mae_scaled": 0.02},
                     "baseline": {"mse": 20.0, "mae": 4.5}}},
        "label_counts": {"grade": {"train": 100, "val": 20, "test": 41}}}
    return markdown_report(summary, metrics)


def test_report_html_is_self_contained_and_matches_the_markdown(written):
    run_dir, paths = written
    html = write_html(run_dir, _report_markdown(), paths).read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(paths) == 5
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<script" not in html
    assert "<h1>Run report: demo 1.0</h1>" in html and "<h2>Figures</h2>" in html
    assert '<td class="num">12,345.7</td>' in html and '<td class="num">0.500</td>' in html
    assert "<td>grade</td>" in html and "<th>baseline F1 (macro)</th>" in html
    assert "<li>data: /data/&lt;b&gt;&amp;co</li>" in html
    assert "<code>a|b</code> &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<code>[0,1]</code>" in html  # inline code of the regression paragraph
    assert "<figcaption>Predicted against true: diameter</figcaption>" in html


def test_markdown_subset_blocks_and_escaped_pipes():
    html = markdown_to_html("# T\ntext one\ntext two\n\n- a\n- b\n| x | y |\n|---|---|\n| a \\| b | -1.5e-3 |\n")
    assert html.splitlines() == ["<h1>T</h1>", "<p>text one text two</p>", "<ul>", "<li>a</li>", "<li>b</li>",
                                 "</ul>", "<table>", "<thead><tr><th>x</th><th>y</th></tr></thead>", "<tbody>",
                                 '<tr><td>a | b</td><td class="num">-1.5e-3</td></tr>', "</tbody>", "</table>"]
    assert caption("figures/confusion_my_task.png") == "Confusion matrix: my_task"
    assert caption("figures/loss_weights.png") == "Loss weights over training"


# -- points on test images (a point task's figure) ----------------------------------------------------------------

FRAME = 2048.0
PX_PER_MM = 1 / 0.175


def _point_task() -> dict:
    from mtl_core.tasks import PointTask

    task = PointTask("location", unit="px", frame=(FRAME, FRAME), extent="size", extent_unit="mm",
                     extent_scale=PX_PER_MM)
    task.fit(np.array([[500.0, 700.0, 10.0], [1500.0, 900.0, 20.0]]))
    return task.describe()


def _point_predictions(n: int = 24) -> pd.DataFrame:
    """Cases with a point (some found: within one diameter, some missed) and two without one."""
    rng = np.random.default_rng(3)
    x, y, size = rng.uniform(300, 1700, n), rng.uniform(300, 1700, n), rng.uniform(8, 30, n)
    error = np.where(np.arange(n) % 3 == 0, 600.0, 0.4 * size * PX_PER_MM)  # every third case a miss
    angle = rng.uniform(0, 2 * np.pi, n)
    frame = pd.DataFrame({"id": [f"case{i:02d}" for i in range(n)], "x_true": x, "y_true": y, "size_true": size,
                          "x_pred": np.clip(x + error * np.cos(angle), 0, FRAME),
                          "y_pred": np.clip(y + error * np.sin(angle), 0, FRAME), "size_pred": size * 1.2})
    frame.loc[n - 2:, ["x_true", "y_true", "size_true"]] = np.nan  # no point: never shown
    return frame


@pytest.fixture(scope="module")
def case_images(tmp_path_factory):
    """64 x 64 PNGs with a bright disc at each case's true point, and a grade stratum of three values."""
    from mtl_core.io import read_image
    from mtl_core.report import CaseImages

    folder, frame = tmp_path_factory.mktemp("images"), _point_predictions()
    yy, xx = np.mgrid[0:64, 0:64]
    paths = {}
    for row in frame.itertuples():
        pixels = 60 + 40 * (xx / 64)
        if not np.isnan(row.x_true):
            pixels += 120 * (np.hypot(xx - row.x_true / 32, yy - row.y_true / 32) < 3)
        paths[row.id] = folder / f"{row.id}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(paths[row.id])
    grade = {case: f"grade {i % 3 + 1}" for i, case in enumerate(frame["id"])}
    return CaseImages(paths, read_image, {"site": {case: "one" for case in grade}, "grade": grade})


@pytest.fixture(scope="module")
def points_figure(case_images):
    plan = dict(figures.figure_plan([_point_task()], _point_predictions(), [], case_images))
    return plan["points_location"]()


def test_points_figure_shows_found_and_missed_cases_on_their_images(points_figure):
    from mtl_core.tasks import PointTask, task_from_schema

    panels = [ax for ax in points_figure.axes if ax.get_visible() and ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert len(panels) == 8 and sum(t.endswith(": hit") for t in titles) == 4  # 4 found, then 4 missed
    assert [t.endswith(": hit") for t in titles] == [True] * 4 + [False] * 4
    assert {t.split("\n")[1].split(",")[0] for t in titles} == {"grade 1", "grade 2", "grade 3"}  # spread over grade
    assert all(len(ax.images) == 1 for ax in panels)  # drawn on the case's image
    frame = _point_predictions().set_index("id")
    task = task_from_schema(_point_task())
    assert isinstance(task, PointTask)
    for title in titles:  # the distance and verdict of each panel are the task's own
        case = title.split("\n")[0]
        truth = frame.loc[[case], ["x_true", "y_true", "size_true"]].to_numpy()
        pred = frame.loc[[case], ["x_pred", "y_pred", "size_pred"]].to_numpy()
        scores = task.score(truth, pred)
        assert f"{scores['distance']:.0f} px: {'hit' if scores['hit_rate'] == 1 else 'miss'}" in title
    assert "8 of 22 test cases with a point" in points_figure.get_suptitle()
    assert "14 found, 8 missed, spread over grade" in points_figure.get_suptitle()
    assert layout_problems(points_figure) == []


def test_points_figure_marks_the_true_extent_and_keeps_both_points_in_view(points_figure):
    from matplotlib.patches import Circle

    frame = _point_predictions().set_index("id")
    for ax in (ax for ax in points_figure.axes if ax.get_visible() and ax.get_title()):
        row = frame.loc[ax.get_title().split("\n")[0]]
        circles = [p for p in ax.patches if isinstance(p, Circle)]
        solid = [c for c in circles if c.get_linestyle() == "-"]
        assert len(solid) == 1 and solid[0].center == pytest.approx((row.x_true, row.y_true))
        assert solid[0].radius == pytest.approx(row.size_true * PX_PER_MM / 2)  # the true diameter, in px
        (x0, x1), (y1, y0) = ax.get_xlim(), ax.get_ylim()
        for x, y in ((row.x_true, row.y_true), (row.x_pred, row.y_pred)):
            assert x0 <= x <= x1 and y0 <= y <= y1


def test_points_figure_without_images_draws_on_a_plain_frame():
    fig = figures.render_points(_point_task(), _point_predictions())
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == 8 and not any(ax.images for ax in panels)


def test_chosen_cases_spread_over_values_and_distances():
    from mtl_core.report.point_figures import choose_cases

    distance = np.arange(12, dtype=float)
    hit = distance < 9  # 9 found, 3 missed: 5 found shown to make up eight
    labels = ["a", "b", "c"] * 4
    ids = [f"c{i}" for i in range(12)]
    shown = choose_cases(distance, hit, labels, ids)
    assert len(shown) == 8 and sorted(shown[5:]) == [9, 10, 11]
    assert {labels[i] for i in shown[:5]} == {"a", "b", "c"}
    assert shown == choose_cases(distance, hit, labels, ids)  # deterministic
    # four of twelve missed cases: spread over the distances (median, quartiles...), not the four middle ones
    assert choose_cases(distance, np.zeros(12, bool), [""] * 12, ids, per_group=2) == [1, 3, 6, 8]


def test_points_figures_are_the_same_bytes_in_one_process_or_two(case_images, tmp_path, monkeypatch):
    tasks, predictions = [_point_task()], _point_predictions()
    two = write_figures(tmp_path / "two", tasks, predictions, HISTORIES, case_images)
    monkeypatch.setattr(figures, "_can_fork", lambda: False)
    one = write_figures(tmp_path / "one", tasks, predictions, HISTORIES, case_images)
    assert [p.name for p in one] == ["points_location.png", "learning_curves.png", "loss_weights.png"]
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert caption(one[0]) == "Predicted and true points on test images: location"
