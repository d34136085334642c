"""How the views get their dependencies: the runtime of the app that serves the request.

`create_app(settings)` bootstraps the process's runtime (`qianxing.wiring.bootstrap`) and keeps
it in `app.extensions["qianxing"]`; views, the throttle and the webhooks read it here instead of
reaching for a process global, so an app carries its own database, Redis, gateways, policies and
sender (docs/architecture.md, "How dependencies reach each layer").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from qianxing.wiring import Runtime

EXTENSION = "qianxing"


def runtime() -> Runtime:
    """The current app's runtime (inside a request or an app context)."""
    return current_app.extensions[EXTENSION]
