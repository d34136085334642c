"""Tier exactness under concurrency, on whichever database the suite runs on (SQLite file or
PostgreSQL): 200 buyers at once across a tier boundary (50 + 50 places), then expiries and
refunds giving places back to their tiers, sold again by a second crowd while Redis is flushed
mid-sale. The real live placement with the real Redis gate, in threads with their own
connections."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from models import payments
from models.db import db
from models.live_orders import SoldOut
from models.live_prices import LiveOrderPrice, LiveTier
from models.orders import Order, Status
from tasks import delivery as delivery_jobs
from tasks import maintenance
from tests.factories import laddered, live_order, tier_counts
from tests.models.test_live_orders import overdue

FIRST, SECOND, BUYERS, THREADS = 50, 50, 200, 32
PRICES = {0: 990, 1: 1990}


def crowd(rt, sku, session_id: int, names: list[str], during=None) -> list[Order | None]:  # noqa: ANN001
    """Every name orders one unit at the same moment; `during` runs once half of them answered.
    Each result is the order, or None for a sold-out refusal (any other error fails the test)."""
    start, half, lock = threading.Event(), threading.Event(), threading.Lock()
    answered = [0]

    def one(name: str) -> Order | None:
        start.wait()
        try:
            return live_order(sku, session_id, name, redis=rt.redis)[0]
        except SoldOut:
            return None
        finally:
            with lock:
                answered[0] += 1
                if answered[0] == len(names) // 2:
                    half.set()

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(one, n) for n in names]
        start.set()
        if during is not None:
            half.wait(60)
            during()
        return [f.result() for f in futures]


def assert_exact(pin_id: int) -> None:
    """Every tier full, its counter equal to the places recorded on live orders, and every
    order priced at the tier it holds."""
    assert tier_counts(pin_id) == [(FIRST, FIRST, FIRST), (SECOND, SECOND, SECOND)]
    with db.connection_context():
        tiers = {t.id: t.seq for t in LiveTier.select().where(LiveTier.pin == pin_id)}
        held = list(LiveOrderPrice.select(LiveOrderPrice, Order.unit_price_fen, Order.status)
                    .join(Order, on=(Order.id == LiveOrderPrice.order_id))
                    .where(~LiveOrderPrice.released).objects())
        assert all(row.status in (Status.PENDING, Status.PAID) for row in held)
        wrong = [r for r in held if r.unit_price_fen != PRICES[tiers[r.tier_id]] or r.price_fen != r.unit_price_fen]
        assert not wrong
        assert Order.select().where(Order.status.in_([Status.PENDING, Status.PAID])).count() == FIRST + SECOND


def test_200_buyers_across_a_tier_boundary_then_places_given_back_and_sold_again(rt, app, shop, fake_pay):  # noqa: ANN001
    # given 50 places at 9.90 and 50 at 19.90 over 150 keys
    sku = shop.card_sku(keys=150, price=9900)
    session, pin = laddered(sku, ((FIRST, 990), (SECOND, 1990)))

    # when 200 buyers order at the same moment
    first = crowd(rt, sku, session.id, [f"w1-{i}" for i in range(BUYERS)])
    sold = [o for o in first if o is not None]
    # then exactly 100 are sold, 50 at each price, and the other 100 refused
    assert len(sold) == FIRST + SECOND and first.count(None) == BUYERS - FIRST - SECOND
    assert sorted(o.unit_price_fen for o in sold) == [990] * FIRST + [1990] * SECOND
    assert_exact(pin.id)

    # when 10 unpaid orders expire (5 per tier) and 6 paid ones are refunded (3 per tier)
    by_tier = {0: [o for o in sold if o.unit_price_fen == 990], 1: [o for o in sold if o.unit_price_fen == 1990]}
    expiring = by_tier[0][:5] + by_tier[1][:5]
    refunding = by_tier[0][5:8] + by_tier[1][5:8]
    with db.connection_context():
        for order in refunding:  # paid through the fake WeChat Pay, as the mini-program does
            payments.prepare_payment(order, rt.gateway, order.user.openid, "10.0.0.2")
            assert fake_pay.notify_acknowledged(fake_pay.pay(order.no))
    overdue(*[o.id for o in expiring])
    assert maintenance.expire_unpaid_orders() == 10
    for order in refunding:
        assert delivery_jobs.refund_order(order.id, "test") == "succeeded"
    # then each tier has exactly 8 places again
    assert tier_counts(pin.id) == [(FIRST, FIRST - 8, FIRST - 8), (SECOND, SECOND - 8, SECOND - 8)]

    # when 60 more buyers order at once while Redis loses everything half-way
    second = crowd(rt, sku, session.id, [f"w2-{i}" for i in range(60)], during=rt.redis.flushdb)
    resold = [o for o in second if o is not None]
    # then exactly the 16 places given back are sold, each at the price of its tier
    assert sorted(o.unit_price_fen for o in resold) == [990] * 8 + [1990] * 8
    assert_exact(pin.id)
