"""The creator rule refund_abuse on both backends: a seller whose sales are refunded too often
gets one hit a day, their pending orders are held and their case gets the item; a seller with
an ordinary refund rate, or too few orders, does not."""

from __future__ import annotations

import datetime as dt
import json

from models import risk_scoring
from models.db import db, utcnow
from models.orders import Order
from models.risk_tables import RiskCase, RiskHit
from tests.books import settle
from tests.factories import allow, chain, make_sku, mark_refunded, paid_order


def run(rt, now: dt.datetime | None = None) -> risk_scoring.ScoreResult:  # noqa: ANN001
    with db.connection_context():
        return risk_scoring.score_creators(risk_scoring.Thresholds(rt.settings.RISK_HOLD_SCORE,
                                                                   rt.settings.RISK_REVIEW_SCORE), now=now)


def held(*order_ids: int) -> list[bool]:
    with db.connection_context():
        return [Order.get_by_id(o).risk_hold for o in order_ids]


def test_a_seller_refunded_over_a_fifth_of_the_time_is_held_once_a_day(rt, shop):
    # given a seller with 6 orders in the month, 2 of them refunded (33%), 4 pending
    (seller,) = chain(1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=i)) for i in range(6)]
    mark_refunded(*ids[:2])
    settle(rt)
    # when the creator rules run
    first = run(rt)
    # then one hit on the creator for today lists the pending orders, which are held, in a case
    assert (first.hits, first.held, first.cases) == (1, 4, 1)
    with db.connection_context():
        hit = RiskHit.get((RiskHit.subject_kind == "creator") & (RiskHit.subject_id == seller.id))
        case = RiskCase.get((RiskCase.creator_id == seller.id) & (RiskCase.state == "open"))
    ev = json.loads(hit.evidence)
    assert hit.period == utcnow().strftime("%Y-%m-%d") and hit.code == "refund_abuse"
    assert ev["orders"] == ids[2:] and (ev["refunded"], ev["sold_or_refunded"], ev["rate_bp"]) == (2, 6, 3333)
    assert held(*ids[2:]) == [True] * 4
    assert case.held_fen == 4000
    # and a second run the same day changes nothing; the next day is a new period
    assert run(rt).hits == 0
    assert run(rt, now=utcnow() + dt.timedelta(days=1)).hits == 1


def test_an_ordinary_refund_rate_or_too_few_orders_is_not_abuse(rt, shop):
    a, b = chain(1), chain(1, prefix="d")
    sku = make_sku(shop)
    steady = [paid_order(a[0], sku) for _ in range(10)]
    mark_refunded(steady[0], steady[1])  # exactly 20%: not over
    few = [paid_order(b[0], sku) for _ in range(4)]
    mark_refunded(few[0], few[1])  # 50% of 4 orders: too few
    settle(rt)
    assert run(rt).hits == 0
    assert not any(held(*steady[2:], *few[2:]))


def test_old_orders_do_not_count_and_an_allowlisted_seller_is_skipped(rt, shop):
    (seller,) = chain(1)
    (other,) = chain(1, prefix="e")
    sku = make_sku(shop)
    old = [paid_order(seller, sku, paid_at=utcnow() - dt.timedelta(days=40)) for _ in range(6)]
    mark_refunded(*old[:3])
    recent = [paid_order(other, sku) for _ in range(5)]
    mark_refunded(*recent[:3])
    allow("creator", other.id, "refund_abuse")
    settle(rt)
    assert run(rt).hits == 0
