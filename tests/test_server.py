"""gunicorn hooks of `qianxing web` (qianxing/server.py)."""

from __future__ import annotations

import threading

from bots import wechat_oa
from bots.types import Reply
from qianxing.server import gunicorn_options


def test_a_stopping_worker_waits_for_wechat_handlers_that_outran_their_budget(settings) -> None:  # noqa: ANN001
    # given a WeChat handler still running after its reply budget was spent
    release, finished = threading.Event(), threading.Event()

    def slow() -> list[Reply]:
        release.wait(5)
        return []

    outcome = wechat_oa.run_within(0.01, handle=slow, follow_up=lambda replies: None,
                                   on_error=lambda exc: None, after=finished.set)
    assert outcome.passive is None and not finished.is_set()
    # when the gunicorn worker exits (the handler finishes a moment later)
    threading.Timer(0.2, release.set).start()
    gunicorn_options(settings)["worker_exit"](None, None)
    # then the exit hook returned only after the handler had finished
    assert finished.is_set()
