"""The ``mtl`` console script's quick exit: output complete, exit code kept, ``atexit`` handlers run, and nothing
cut off when another thread is still working."""

from __future__ import annotations

import subprocess
import sys

import pytest

QUICK = """
import atexit, threading, time
from mtl_core.cli import exit_quickly
atexit.register(lambda: print("atexit ran", flush=True))
{extra}
print("output" * 2000)
exit_quickly(3)
"""
WORKER = """
def work():
    time.sleep(0.3)
    print("worker finished", flush=True)
threading.Thread(target=work).start()
"""


@pytest.mark.parametrize("extra, expected", [("", "atexit ran"), (WORKER, "worker finished")])
def test_the_quick_exit_keeps_output_code_and_unfinished_work(extra, expected):
    done = subprocess.run([sys.executable, "-c", QUICK.format(extra=extra)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3
    assert done.stdout.count("output") == 2000 and expected in done.stdout
