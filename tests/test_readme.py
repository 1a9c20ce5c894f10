"""The README's "Use as a library" block runs exactly as written and learns."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_library_block_runs_and_beats_baselines():
    block = re.search(r"## Use as a library\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no 'Use as a library' python block"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), str(README), "exec"), {"__name__": "readme"})
    lines = printed.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["kind", "size"]
    assert "baseline:" in lines[0] and "f1_macro" in lines[0] and "mae" in lines[1]
