"""Coupons are never over-redeemed, on whichever database the suite runs on (SQLite file or
PostgreSQL): 200 buyers order at the same moment with a coupon limited to 50 uses, through the
order service the route calls (models/checkout.py), in threads with their own connections;
then the per-user limits across parallel sessions: one buyer claiming a code at once from many
sessions, and one grant applied to many parallel orders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from models import coupons
from models.catalog import Kind
from models.coupons import Coupon, CouponGrant, CouponRedemption
from models.db import db
from models.errors import Conflict
from models.orders import Order
from tests.factories import buyer, coupon, granted, with_coupons

BUYERS, USES, THREADS, OFF = 200, 50, 32, 500
T = TypeVar("T")


def crowd(action: Callable[[int], T], count: int) -> list[T | str]:
    """Run action(i) for every i at the same moment; each result, or the code of the domain
    refusal it raised (any other error fails the test)."""
    start = threading.Event()

    def one(i: int) -> T | str:
        start.wait()
        try:
            return action(i)
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        start.set()
        return [f.result() for f in futures]


def test_200_orders_with_a_coupon_of_50_uses_give_exactly_50_discounted_orders(rt, shop):  # noqa: ANN001
    # given a coupon limited to 50 uses, 200 buyers holding a grant each, and stock for all
    sku = shop.counter_sku(Kind.SERIAL, stock=BUYERS + 10, price=2_000)
    made = coupon(max_uses=USES, amount_off_fen=OFF)
    people = [buyer(f"crowd-{i}") for i in range(BUYERS)]
    grants = granted(made, *people)

    # when all 200 order with it at the same moment
    answers = crowd(lambda i: with_coupons(sku, [grants[i]], people[i]), BUYERS)

    # then exactly 50 orders are placed, each 5 yuan off, and the 150 others are refused cleanly
    placed = [a for a in answers if isinstance(a, Order)]
    assert len(placed) == USES
    assert sorted(a for a in answers if isinstance(a, str)) == ["coupon_exhausted"] * (BUYERS - USES)
    with db.connection_context():
        assert Order.select().count() == USES
        assert all(o.discount_fen == OFF and o.amount_fen == 2_000 - OFF for o in Order.select())
        row = Coupon.get_by_id(made.id)
        assert (row.uses, row.spent_fen) == (USES, USES * OFF)
        assert CouponRedemption.select().count() == USES
        assert CouponGrant.select().where(CouponGrant.state == "reserved").count() == USES
        assert CouponGrant.select().where(CouponGrant.state == "available").count() == BUYERS - USES


def test_a_per_user_limit_holds_across_parallel_sessions(rt, shop):  # noqa: ANN001
    # given a code claimable 3 times per person
    coupon(code="PARALLEL2026", per_user_limit=3)
    ann = buyer("ann")

    # when Ann claims it from 20 sessions at once
    def claim(_i: int) -> CouponGrant:
        with db.connection_context():
            return coupons.claim(ann.id, "PARALLEL2026")

    answers = crowd(claim, 20)
    # then she holds exactly 3, the 17 others are refused with the limit
    assert len([a for a in answers if isinstance(a, CouponGrant)]) == 3
    assert sorted(a for a in answers if isinstance(a, str)) == ["coupon_limit"] * 17
    with db.connection_context():
        assert CouponGrant.select().where(CouponGrant.user_id == ann.id).count() == 3

    # when she applies one grant to 10 parallel orders, then exactly one order gets it
    sku = shop.counter_sku(Kind.SERIAL, stock=20, price=2_000)
    with db.connection_context():
        grant = CouponGrant.select().where(CouponGrant.user_id == ann.id).first().id
    orders = crowd(lambda _i: with_coupons(sku, [grant], ann), 10)
    assert len([o for o in orders if isinstance(o, Order)]) == 1
    assert sorted(o for o in orders if isinstance(o, str)) == ["coupon_in_use"] * 9
    with db.connection_context():
        assert Order.select().count() == 1 and CouponRedemption.select().count() == 1
