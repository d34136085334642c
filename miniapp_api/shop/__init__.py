"""The promotion and self-service routes of the mini-program API (/api/v1/..., issue 14), one
module per area: `coupons` (claim by code, the wallet), `groupbuy` (activities, teams, start and
join go through POST /orders), `self_service` (cancel, refund requests, categories and search),
`consent` (subscribe-message consents).
Each module has an `APIBlueprint` named `bp`; `register(app)` adds them all."""

from __future__ import annotations

import importlib
from typing import Any

AREAS = ("coupons", "groupbuy", "self_service", "consent")


def register(app: Any) -> None:
    for area in AREAS:
        app.register_api(importlib.import_module(f"miniapp_api.shop.{area}").bp)
