"""``report.html``: the run's ``report.md`` as one self-contained page, figures embedded as base64 PNG.

Only the Markdown subset that :mod:`mtl_core.report.markdown` writes is understood (``#``/``##`` headings, ``- ``
bullets,
pipe tables, paragraphs, inline code); a Markdown library would be a new dependency for five constructs. The page
loads nothing from anywhere: inline CSS, ``data:`` image URIs, no scripts.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from ..io import atomic_write

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f3f3; padding: 0 .25em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #bbb; padding: .25em .6em; }
th { background: #eef1f5; text-align: left; }
td.num { text-align: right; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
         font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: .95em; }
""".strip()

_NUMBER = re.compile(r"^(?=.*\d)[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?$")
_CAPTIONS = {"confusion": "Confusion matrix", "scatter": "Predicted against true",
             "points": "Predicted and true points on test images", "learning_curves": "Learning curves",
             "loss_weights": "Loss weights over training", "roc": "ROC and precision-recall curves",
             "calibration": "Reliability diagram (calibration)"}


def inline(text: str) -> str:
    """Escape ``text`` for HTML and turn `code` spans into ``<code>``."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick stays a literal character
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p) for i, p in enumerate(parts))


def _cells(line: str) -> list[str]:
    """Cells of a pipe-table row; a backslash makes the next ``|`` or ``\\`` literal (as
    :func:`~mtl_core.report.markdown.markdown_cell` writes them)."""
    cells, text, closed = [], [], False
    chars = iter(line.strip().removeprefix("|"))
    for char in chars:
        closed = char == "|"
        if char == "\\":
            after = next(chars, "")
            text.append(after if after and after in "|\\" else char + after)
        elif closed:
            cells.append("".join(text).strip())
            text = []
        else:
            text.append(char)
    return cells if closed else [*cells, "".join(text).strip()]


def _table(lines: list[str]) -> list[str]:
    head, body = _cells(lines[0]), [_cells(line) for line in lines[1:] if not re.fullmatch(r"[|\s:-]+", line)]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead>", "<tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f'<td class="num">{inline(c)}</td>' if c and _NUMBER.match(c)
                                    else f"<td>{inline(c)}</td>" for c in row) + "</tr>")
    return out + ["</tbody>", "</table>"]


def _block(kind: str, lines: list[str]) -> list[str]:
    if kind == "table":
        return _table(lines)
    if kind == "list":
        return ["<ul>"] + [f"<li>{inline(line[2:])}</li>" for line in lines] + ["</ul>"]
    return ["<p>" + " ".join(inline(line.strip()) for line in lines) + "</p>"]


def _kind(line: str) -> str:
    if line.startswith("|"):
        return "table"
    return "list" if line.startswith("- ") else "paragraph"


def markdown_to_html(markdown_text: str) -> str:
    """HTML body for the Markdown subset of ``report.md``; all text is escaped."""
    out: list[str] = []
    kind, lines = "", []
    for line in [*markdown_text.splitlines(), ""]:
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        new = "" if not line.strip() or heading else _kind(line)
        if lines and new != kind:
            out += _block(kind, lines)
            lines = []
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2).strip())}</h{level}>")
        elif new:
            kind = new
            lines.append(line)
    return "\n".join(out)


def caption(path: Path) -> str:
    """A figure's caption from its file name: ``confusion_state.png`` -> "Confusion matrix: state"."""
    stem = Path(path).stem
    for prefix, text in _CAPTIONS.items():
        if stem == prefix:
            return text
        if stem.startswith(prefix + "_"):
            return f"{text}: {stem[len(prefix) + 1:]}"
    return stem.replace("_", " ")


def _figure_html(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    text = escape(caption(path))
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>")


def _saliency_html(run_dir: Path, saliency: dict[str, list[dict[str, str]]]) -> list[str]:
    """The "Where the model looked" section: per task a row of overlays (``file`` relative to ``run_dir``), each
    with its case, what the map explains, the model's prediction and the truth."""
    parts = ["<h2>Where the model looked</h2>",
             "<p>Grad-CAM on each backbone's last feature map, fused (a point task: its own heatmap), for a few "
             "held-out images; <code>mtl explain</code> draws them for any image.</p>"]
    for task, shown in saliency.items():
        parts.append(f"<p><strong>{escape(task)}</strong></p><div>")  # not <h3>: those mirror report.md
        for item in shown:
            data = base64.b64encode((Path(run_dir) / item["file"]).read_bytes()).decode("ascii")
            text = (f"{escape(item['id'])}: map of {escape(item['target'])}; predicted {escape(item['prediction'])}"
                    f", truth {escape(item['truth'])}")
            parts.append(f'<figure style="display:inline-block;width:220px;vertical-align:top">'
                         f'<img src="data:image/png;base64,{data}" alt="{text}" style="width:100%;'
                         f'image-rendering:pixelated"><figcaption>{text}</figcaption></figure>')
        parts.append("</div>")
    return parts


def write_html(run_dir: Path, markdown_text: str, figures: list[Path],
               saliency: dict[str, list[dict[str, str]]] | None = None) -> Path:
    """Write ``run_dir/report.html``: ``markdown_text`` as HTML, then every figure embedded, then the saliency
    overlays (``saliency``: task -> [{"file", "id", "target", "prediction", "truth"}]), and return its path.

    Example:
        >>> write_html(Path("runs/demo"), Path("runs/demo/report.md").read_text(),
        ...            sorted(Path("runs/demo/figures").glob("*.png")))  # doctest: +SKIP
    """
    title = next((line.lstrip("#").strip() for line in markdown_text.splitlines() if line.startswith("# ")),
                 "Run report")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(title)}</title>", f"<style>\n{_STYLE}\n</style>", "</head>", "<body>",
             markdown_to_html(markdown_text)]
    if figures:
        parts += ["<h2>Figures</h2>"] + [_figure_html(p) for p in figures]
    if saliency:
        parts += _saliency_html(run_dir, saliency)
    parts += ["</body>", "</html>", ""]
    path = Path(run_dir) / "report.html"
    atomic_write(path, "\n".join(parts))
    return path
