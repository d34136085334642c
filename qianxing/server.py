"""gunicorn serving the Flask app (the Procfile's `web`)."""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from qianxing.settings import Settings

log = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings, self.options = settings, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):  # noqa: ANN201
        from miniapp_api import create_app

        return create_app(self.settings)


# Imported lazily by the webhook views; loaded before the freeze so their objects are frozen too.
_WARM_MODULES = ("bots.core", "bots.commands", "bots.wechat_oa", "bots.sender", "bots.telegram")


def _post_worker_init(worker: Any) -> None:
    """Load what requests will import, then move every object alive now (app, libraries: about
    a quarter of a million) out of the garbage collector's reach. Without it each full
    collection walks them all: pauses of 100-380 ms measured in the webhook benchmark, and
    both workers, forked with the same counters, tended to pause together."""
    for name in _WARM_MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    threading.Thread(target=_warm_answers, name="warm-answers", daemon=True).start()


def _warm_answers() -> None:
    """The grounded answers' index (content_ai.retrieval: the embedding model and every fact's
    vector, seconds), built beside the first requests: the official account's first question
    then answers within its reply budget."""
    try:
        from content_ai import retrieval
        from models.db import db
        from qianxing import wiring

        with db.connection_context():
            retrieval.warm(wiring.runtime().settings)
    except Exception:  # noqa: BLE001 - the first question builds it then
        log.warning("warming the answer index failed", exc_info=True)


def _worker_exit(server: Any, worker: Any) -> None:
    """A stopping worker first lets the WeChat handlers that outran their reply budget finish
    (their answers go out through the customer-service API); gunicorn's graceful timeout still
    bounds the wait."""
    from bots import wechat_oa

    wechat_oa.drain()


def gunicorn_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": settings.WEB_BIND,
        "workers": settings.WEB_WORKERS,
        "threads": settings.WEB_THREADS,
        "worker_class": "gthread" if settings.WEB_THREADS > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        # Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
        # evenly; with one shared socket a burst of keep-alive connections can pile onto one
        # worker and leave the other idle (measured: ping throughput halved in some runs).
        "reuse_port": True,
        "accesslog": None,
        "loglevel": "warning",
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
    }
    options.update(overrides)
    return options


def serve(settings: Settings, **overrides: Any) -> None:
    _Gunicorn(settings, gunicorn_options(settings, **overrides)).run()
