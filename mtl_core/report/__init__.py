"""What a run shows: the markdown and HTML reports and the figures."""

from __future__ import annotations

from .canvas import CaseImages
from .figures import write_figures
from .html import write_html
from .markdown import (
    beats_baseline,
    cell,
    console_table,
    markdown_cell,
    markdown_report,
    markdown_text,
    metric_label,
    section_of,
    shown_metrics,
    summary_metrics,
)

__all__ = [
    "CaseImages", "beats_baseline", "cell", "console_table", "markdown_cell", "markdown_report", "markdown_text",
    "metric_label", "section_of", "shown_metrics", "summary_metrics", "write_figures", "write_html"
]
