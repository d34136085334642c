"""Child processes are stopped politely, and by force when they ignore SIGTERM."""

from __future__ import annotations

import subprocess
import sys

from qianxing.processes import stop_all

IGNORES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")


def test_polite_processes_stop_and_stubborn_ones_are_killed():
    # given one process that exits on SIGTERM and one that ignores it (in its own session)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE,
                                start_new_session=True)
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == b"ready"
    # when both are stopped with a short grace period
    killed = stop_all([polite, stubborn], timeout=1.0)
    # then both are gone, and only the stubborn one needed SIGKILL
    assert polite.poll() is not None and stubborn.poll() is not None
    assert killed == [stubborn]
