"""`xl-ecom ARGS` run inside the test process: the CLI's own ``main()`` with its output captured.

The same parser, the same commands and the same exit-code convention as ``python -m xl_ecom`` in a
subprocess, without paying for a fresh interpreter and its imports on every call (about a second each,
most of the suite's time in the ledger tests).  The entry point itself (``python -m xl_ecom``, exit codes
seen by a shell, argparse's Chinese strings, kill -9) stays covered by subprocess runs in test_cli.py,
test_udfs_cli.py, test_hardening.py and test_kill.py.

:func:`cli_process` runs the real ``python -m xl_ecom`` instead, for what only another process shows
(a lock held by this one, which is re-entrant within its own process).

Both return a :class:`subprocess.CompletedProcess` so a test reads ``returncode`` / ``stdout`` / ``stderr``
as it would from a subprocess.  A traceback in the output fails the test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from xl_ecom.frontends import cli as _cli


def cli(*args, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    here = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = _cli.main(argv)
            except SystemExit as exc:  # argparse's own errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(here)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    proc = subprocess.CompletedProcess(["xl-ecom", *argv], code, out.getvalue(), err.getvalue())
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def cli_process(*args, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "xl_ecom", *map(str, args)], capture_output=True, text=True,
                          encoding="utf-8", timeout=600, check=False, cwd=cwd)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc
