"""Hints as data (models/live_hints.py) through the dashboard (models/live_board.py): the
seeded rules (conversion under a threshold for five minutes; five minutes before a planned
product slot), rules switched off, the provider hook, and rule validation."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live_board, live_dashboard, live_hints
from models.db import db
from models.errors import InvalidInput
from models.live import LivePin
from models.live_dashboard import DashboardPolicy
from models.live_hints import Hint, LiveHintRule
from tests.factories import on_air

T0 = dt.datetime(2026, 12, 1, 12, 0, 0)
POLICY = DashboardPolicy(viewer_timeout_s=3600, sample_every_s=15, history=100)
LOW = "转化率偏低，建议上架福利品"


def crowd(rt, sid: int, viewers: int = 25) -> None:  # noqa: ANN001
    with db.connection_context():
        for v in range(viewers):
            live_dashboard.entered(rt.redis, sid, 5000 + v, T0)


def board_at(rt, sid: int, seconds: float) -> dict:  # noqa: ANN001
    with db.connection_context():
        return live_board.board(rt.redis, sid, now=T0 + dt.timedelta(seconds=seconds), policy=POLICY)


def texts(board: dict) -> list[str]:
    return [h["text"] for h in board["hints"]]


def test_low_conversion_for_five_minutes_gives_the_hint(rt):
    # given a live room with 25 viewers and no buyer
    _, sid = on_air()
    crowd(rt, sid)
    # when the dashboard is looked at every 30 s
    seen = {s: texts(board_at(rt, sid, s)) for s in range(0, 331, 30)}
    # then the hint appears once the conversion has been low for 5 minutes, not before
    assert all(LOW not in seen[s] for s in range(0, 300, 30))
    assert LOW in seen[300] and LOW in seen[330]


def test_a_break_in_the_condition_restarts_the_clock(rt, shop, run_jobs):
    # given a room with low conversion for four minutes, then a buyer lifts it above 2%
    from tests.factories import live_sale

    host, sid = on_air()
    crowd(rt, sid)
    for s in range(0, 241, 30):
        board_at(rt, sid, s)
    live_sale(shop.card_sku(keys=1), host, sid, "buyer")
    run_jobs()
    assert board_at(rt, sid, 270)["conversion_bp"] == 400
    # when the buyer's order is refunded and counters drop again (the session reconciles later)
    rt.redis.hset(live_dashboard.key(sid, "stats"), "orders", 0)
    rt.redis.delete(live_dashboard.key(sid, "buyers"))
    # then five minutes are counted from the first low sample after the break, not from the start
    assert LOW not in texts(board_at(rt, sid, 400))
    assert LOW not in texts(board_at(rt, sid, 690))
    assert LOW in texts(board_at(rt, sid, 700))


def test_too_small_an_audience_gives_no_conversion_hint(rt):
    # given 5 viewers (the rule needs 20)
    _, sid = on_air()
    crowd(rt, sid, viewers=5)
    for s in range(0, 331, 30):
        last = board_at(rt, sid, s)
    assert LOW not in texts(last)


def test_a_planned_product_slot_gives_the_hint_five_minutes_before(rt, shop):
    # given a live session with products planned at T0+4 min and T0+20 min
    _, sid = on_air()
    soon, later = shop.card_sku(keys=1, code="WELFARE"), shop.card_sku(keys=1, code="LATER")
    with db.connection_context():
        LivePin.create(session=sid, sku=soon.id, slot_at=T0 + dt.timedelta(minutes=4), position=1)
        LivePin.create(session=sid, sku=later.id, slot_at=T0 + dt.timedelta(minutes=20), position=2)
    # then at T0 the first one is announced with the minutes left, the second not yet
    assert texts(board_at(rt, sid, 0)) == [f"剩余4分钟上架{soon.name}"]
    # and after the slot has passed nothing is shown for it
    assert texts(board_at(rt, sid, 5 * 60)) == []
    assert texts(board_at(rt, sid, 16 * 60)) == [f"剩余4分钟上架{later.name}"]


def test_a_rule_switched_off_is_silent(rt, shop):
    _, sid = on_air()
    sku = shop.card_sku(keys=1)
    with db.connection_context():
        LivePin.create(session=sid, sku=sku.id, slot_at=T0 + dt.timedelta(minutes=2))
        live_hints.seed_defaults()
        LiveHintRule.update(enabled=False).where(LiveHintRule.code == "slot_soon").execute()
    assert board_at(rt, sid, 0)["hints"] == []


def test_providers_are_a_hook_and_a_broken_one_never_breaks_the_dashboard(rt, monkeypatch):
    # given the rule provider, a model-backed one and one that fails
    _, sid = on_air()

    def model(ctx: live_hints.HintContext) -> list[Hint]:
        return [Hint("model:pitch", f"{ctx.snapshot['online']} 人在线，讲讲福利款", source="model")]

    def broken(ctx: live_hints.HintContext) -> list[Hint]:
        raise RuntimeError("model unavailable")

    monkeypatch.setattr(live_hints, "PROVIDERS", list(live_hints.PROVIDERS))
    live_hints.register_provider(broken)
    live_hints.register_provider(model)
    live_hints.register_provider(model)  # once only
    crowd(rt, sid, viewers=3)
    # then the dashboard carries the model's hint, marked as such
    assert board_at(rt, sid, 0)["hints"] == [{"code": "model:pitch", "text": "3 人在线，讲讲福利款", "source": "model"}]


@pytest.mark.parametrize("values", [
    {"kind": "metric", "metric": "nope", "op": "<", "text": "x"},
    {"kind": "metric", "metric": "online", "op": "!=", "text": "x"},
    {"kind": "metric", "metric": "online", "op": "<", "text": ""},
    {"kind": "metric", "metric": "online", "op": "<", "text": "x", "for_s": "ten"},
    {"kind": "metric", "metric": "online", "op": "<", "text": "x", "for_s": 99_999},
    {"kind": "metric", "metric": "online", "op": "<", "text": "x", "threshold": -1},
    {"kind": "before_slot", "lead_s": 300, "text": "{secret.__class__}"},
    {"kind": "before_slot", "lead_s": 0, "text": "soon"},
    {"kind": "chart", "text": "x"},
])
def test_a_bad_rule_is_refused(values):
    with pytest.raises(InvalidInput):
        live_hints.check_rule(values)


def test_a_good_rule_is_normalised():
    rule = live_hints.check_rule({"kind": "metric", "metric": "online", "op": ">=", "threshold": "500",
                                  "for_s": "60", "text": "  人气很高，  抓紧上架  "})
    assert rule == {"kind": "metric", "metric": "online", "op": ">=", "threshold": 500, "for_s": 60,
                    "min_viewers": 0, "lead_s": 0, "text": "人气很高， 抓紧上架"}
