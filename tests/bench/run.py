"""Running a benchmark the way an operator does: `qianxing bench NAME ...` in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def bench_result(name: str, *args: str, required: Iterable[str], timeout: float) -> dict[str, Any]:
    """Run `qianxing bench NAME ARGS` with the current environment (so CI's DATABASE_URL and
    REDIS_URL are exercised) and return its result: the command must exit cleanly and its last
    line must be one JSON object holding every `required` key."""
    proc = subprocess.run([sys.executable, "-m", "qianxing.cli", "bench", name, *args], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-4000:]
    result = json.loads(lines[-1])
    missing = [k for k in required if k not in result]
    assert not missing, f"missing keys {missing} in {result}"
    return result
