"""A pre-loaded ``mtl`` for tests that run many short commands: ``python -m tests.reliability._forkserver``.

It imports the engine, the JSRT plugin and their libraries once (seconds of CPU each time otherwise), then reads
one JSON request per line on stdin -- ``{"argv": [...], "env": {...}, "stdout": path, "stderr": path, "fault":
optional}`` -- and forks a child per request. The child is a separate process running the console script's entry
point, ``mtl_core.cli.main(argv)``, with its own stdout and stderr files, exactly as ``mtl ARGS`` would after
interpreter start-up: an exception that escapes ``main`` prints its traceback and exits 1, as the interpreter does.
The parent answers ``{"returncode": ...}`` (negative: killed by that signal) when the child has ended.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _child(request: dict) -> None:
    for fd, key in ((1, "stdout"), (2, "stderr")):
        target = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.environ.update(request.get("env", {}))
    code = 1
    try:
        if request.get("fault"):
            from tests.reliability._harness import install

            install(request["fault"])
        from mtl_core.cli import main

        sys.argv = ["mtl", *request["argv"]]
        code = main(request["argv"])
    except SystemExit as exc:  # argparse errors, sys.exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def serve() -> None:
    """Answer requests until stdin closes."""
    import jsrt_res_mtnet.plugin  # noqa: F401 - everything `mtl run` and `mtl predict` import, once
    import pydicom  # noqa: F401
    import timm
    import torchvision  # noqa: F401

    import mtl_core.cli  # noqa: F401
    import mtl_core.workflow.pipeline  # noqa: F401
    import mtl_core.workflow.predict  # noqa: F401

    timm.list_models()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            _child(request)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
