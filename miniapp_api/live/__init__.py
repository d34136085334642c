"""The live-commerce routes of the mini-program API (/api/v1/...), one module per area:
`sessions` (scheduling, the public session page), `reservations`, `lottery`, `assist`,
`dashboard` (viewers, counters, hints, votes), `drama` (short-drama series and episodes) and
`talk` (talk tracks and the funnel hint, issue 16).
Each module has an `APIBlueprint` named `bp`; `register(app)` adds them all."""

from __future__ import annotations

import importlib
from typing import Any

AREAS = ("sessions", "reservations", "lottery", "assist", "dashboard", "drama", "talk")


def register(app: Any) -> None:
    for area in AREAS:
        app.register_api(importlib.import_module(f"miniapp_api.live.{area}").bp)
