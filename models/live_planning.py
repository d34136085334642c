"""Scheduling a live session with everything planned for it, in one step: the session, its
pinned products (each with an optional slot, price ladder and assist offer) and an optional
reservation lottery.

`schedule` validates everything first (its own rules in models/live_rules.py, then each area's
parser: live_prices.parse_ladder, assist.parse_offer, lottery.parse_lottery) and only then
writes, in one transaction: the session, the pins, each area's `save_*` / `configure`, and the
event live.scheduled. A bad field anywhere writes nothing.

It lives beside models/live.py, not in it, because those areas' modules import models.live
(their tables point at sessions and pins): models.live imports none of them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from models import assist, events, live_prices, lottery
from models.catalog import Sku
from models.db import db, utcnow
from models.errors import InvalidInput
from models.live import LivePin, LiveSession, LiveState
from models.live_rules import check_cover, check_minutes, check_slot, check_start, check_title
from models.network import Creator

DEFAULT_MAX_PINS = 50  # settings.LIVE_MAX_PINS


@dataclass(frozen=True)
class PinSpec:
    """A product to pin: its SKU code, an optional planned slot (naive UTC or aware), and the
    optional ladder (models/live_prices.py) and assist offer (models/assist.py) as given."""
    sku_code: str
    slot_at: dt.datetime | None = None
    ladder: dict[str, Any] | None = None
    assist: dict[str, Any] | None = None


@dataclass(frozen=True)
class SessionSpec:
    """A session to schedule; `scheduled_at` is naive UTC or aware (the transports convert what
    a creator types in settings.LIVE_TIMEZONE); `lottery` as models/lottery.py parses it."""
    title: str
    scheduled_at: dt.datetime
    expected_minutes: int = 60
    cover_url: str = ""
    pins: list[PinSpec] = field(default_factory=list)
    lottery: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Pin:
    sku: Sku
    slot_at: dt.datetime | None
    tiers: list[Any]
    offer: Any


def _skus(codes: list[str]) -> dict[str, Sku]:
    found = {s.code: s for s in Sku.select().where(Sku.code.in_(codes), Sku.active == True)}  # noqa: E712
    for code in codes:
        if code not in found:
            raise InvalidInput(f"no product with the code {code!r} is on sale", code="unknown_sku")
    return found


def _pins(spec: SessionSpec, start: dt.datetime, minutes: int, max_pins: int) -> list[_Pin]:
    if not isinstance(spec.pins, list | tuple):
        raise InvalidInput("pins is a list", code="invalid_pins")
    if len(spec.pins) > max_pins:
        raise InvalidInput(f"at most {max_pins} products per session", code="too_many_pins")
    codes = [p.sku_code for p in spec.pins]
    if any(not isinstance(c, str) or not c or len(c) > 64 for c in codes):
        raise InvalidInput("a pinned product needs its SKU code", code="unknown_sku")
    if len(set(codes)) != len(codes):
        dup = next(c for c in codes if codes.count(c) > 1)
        raise InvalidInput(f"the product {dup!r} is pinned twice", code="duplicate_pin")
    skus = _skus(codes) if codes else {}
    planned = []
    for p in spec.pins:
        sku = skus[p.sku_code]
        tiers = live_prices.parse_ladder(p.ladder, sku.retail_price_fen) if p.ladder is not None else []
        offer = assist.parse_offer(p.assist, sku.retail_price_fen) if p.assist is not None else None
        planned.append(_Pin(sku, check_slot(p.slot_at, start, minutes), tiers, offer))
    return planned


def schedule(creator: Creator, spec: SessionSpec, *, actor: str | None = None, max_pins: int = DEFAULT_MAX_PINS,
             now: dt.datetime | None = None) -> LiveSession:
    """Schedule a session (state scheduled). Raises InvalidInput: invalid_title,
    live_start_past, live_start_too_far, invalid_expected_minutes, invalid_cover_url,
    too_many_pins, duplicate_pin, unknown_sku, invalid_slot, and the codes of
    live_prices.parse_ladder, assist.parse_offer and lottery.parse_lottery; nothing is written
    then."""
    now = now or utcnow()
    title = check_title(spec.title)
    start = check_start(spec.scheduled_at, now)
    minutes = check_minutes(spec.expected_minutes)
    cover = check_cover(spec.cover_url)
    pins = _pins(spec, start, minutes, max_pins)
    draw = lottery.parse_lottery(spec.lottery, now=now) if spec.lottery is not None else None
    with db.atomic():
        session = LiveSession.create(creator=creator.id, title=title, state=LiveState.SCHEDULED.value,
                                     scheduled_at=start, expected_minutes=minutes, cover_url=cover,
                                     started_at=None, updated_at=now)
        for position, p in enumerate(pins):
            pin = LivePin.create(session=session.id, sku=p.sku.id, position=position, slot_at=p.slot_at)
            if p.tiers:
                live_prices.save_ladder(pin, p.tiers)
            if p.offer is not None:
                assist.save_offer(pin, p.offer)
        if draw is not None:
            lottery.configure(session, draw)
        events.record("live.scheduled", session.subject, actor or creator.actor, scheduled_at=start.isoformat(),
                      pins=[p.sku.code for p in pins], lottery=draw is not None)
    return session
