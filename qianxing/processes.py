"""Stopping the child processes that `qianxing run`, the benchmarks and the tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable


def stop_all(procs: Iterable[subprocess.Popen], timeout: float = 15.0) -> list[subprocess.Popen]:
    """SIGTERM every process still running, wait up to `timeout` in all, then SIGKILL what is
    left (its whole process group when it leads one, so gunicorn's workers go too). Returns the
    processes that had to be killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    killed = []
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(proc)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            proc.wait(timeout=10)
    return killed
