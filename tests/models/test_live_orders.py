"""Live orders on a price ladder through the real order route and services: the tier decided at
placement and recorded, the sold-out gate (refusals from Redis, reload after a flush, Redis
down), places given back by expiry and refunds exactly once and sold again, late payments,
idempotent replays, commission on the price paid."""

from __future__ import annotations

import datetime as dt

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models import live_gate, live_orders, live_prices, payments
from models.db import db, utcnow
from models.errors import OutOfStock
from models.live_orders import SoldOut
from models.orders import Order, Status
from tasks import delivery as delivery_jobs
from tasks import maintenance
from tests.books import lines_of, settle
from tests.factories import (
    ORDERS,
    assist_session,
    buyer,
    chain,
    laddered,
    live_order,
    tier_counts,
)

RETAIL = 9900


@pytest.fixture
def ladder(rt, shop):  # noqa: ANN001, ANN201
    """A card SKU (10 keys, retail 99 yuan) pinned on air with tiers 2 x 9.90 and 2 x 19.90."""
    sku = shop.card_sku(keys=10, price=RETAIL)
    session, pin = laddered(sku, ((2, 990), (2, 1990)))
    return sku, session, pin


def buy(client, auth, sku, session, key=None, quantity=1):  # noqa: ANN001, ANN201
    headers = {**auth, "Idempotency-Key": key} if key else auth
    return client.post(ORDERS, json={"sku": sku.code, "quantity": quantity, "live": session.id}, headers=headers)


def overdue(*order_ids: int) -> None:
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Order.id.in_(order_ids)).execute()


def test_the_first_buyers_get_the_first_tier_and_the_next_the_second_then_sold_out(client, login, ladder):
    # given a ladder of 2 at 9.90 then 2 at 19.90
    sku, session, pin = ladder
    # when five buyers order in the live room one after the other
    answers = [buy(client, login(f"b{i}"), sku, session) for i in range(5)]
    # then the first two pay 9.90, the next two 19.90, and the fifth is refused: sold out
    assert [a.status_code for a in answers] == [201, 201, 201, 201, 409]
    assert [a.json["amount_fen"] for a in answers[:4]] == [990, 990, 1990, 1990]
    assert answers[4].json["error"]["code"] == "sold_out"
    # and each order records its tier, is the session's creator's live sale, without markup
    with db.connection_context():
        rows = [live_prices.price_of(a.json["id"]) for a in answers[:4]]
        assert [(r.tier_seq, r.price_fen, r.released) for r in rows] == [
            (0, 990, False), (0, 990, False), (1, 1990, False), (1, 1990, False)]
        order = Order.get_by_id(answers[0].json["id"])
        assert (order.live_id, order.seller_id, order.markup_fen) == (session.id, session.creator_id, 0)
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]


def test_a_two_unit_order_at_the_boundary_takes_the_next_tier_whole(client, login, ladder):
    # given one place left in tier 1
    sku, session, pin = ladder
    assert buy(client, login("a"), sku, session).status_code == 201
    # when a buyer orders two units
    pair = buy(client, login("b"), sku, session, quantity=2)
    # then both come from tier 2 at its price, and tier 1 keeps its place for the next buyer
    assert pair.status_code == 201 and pair.json["amount_fen"] == 2 * 1990
    assert buy(client, login("c"), sku, session).json["amount_fen"] == 990
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]


def test_the_refusal_comes_from_the_gate_without_the_database(client, login, ladder, rt):
    # given the gate of a ladder that has every place in the database says none is left
    sku, session, pin = ladder
    rt.redis.set(live_gate.key(pin.id), 0, ex=60)
    # when a buyer orders, then the gate refuses (the database would have sold)
    refused = buy(client, login("a"), sku, session)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "sold_out"
    assert tier_counts(pin.id) == [(2, 0, 0), (2, 0, 0)]
    with db.connection_context():
        assert Order.select().count() == 0


def test_a_redis_flush_mid_sale_reloads_the_gate_from_the_database_never_overselling(client, login, ladder, rt):
    # given three of four places sold
    sku, session, pin = ladder
    for i in range(3):
        assert buy(client, login(f"a{i}"), sku, session).status_code == 201
    # when Redis loses everything (a restart) and three more buyers come
    rt.redis.flushdb()
    answers = [buy(client, login(f"b{i}"), sku, session).status_code for i in range(3)]
    # then exactly the last place is sold and the rest refused; the gate is loaded again
    assert answers == [201, 409, 409]
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]
    assert int(rt.redis.get(live_gate.key(pin.id))) == 0


def test_redis_unreachable_the_database_decides_alone(rt, ladder):
    # given a Redis nobody listens on
    sku, session, pin = ladder
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    try:
        # when five buyers order, then four get the ladder's places and the fifth a clean refusal
        made = [live_order(sku, session.id, f"d{i}", redis=down)[0] for i in range(4)]
        assert [o.unit_price_fen for o in made] == [990, 990, 1990, 1990]
        with pytest.raises(SoldOut):
            live_order(sku, session.id, "d5", redis=down)
        assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]
    finally:
        live_orders.forget_cached_pins()  # this process forgets the outage


def test_an_expired_order_gives_its_place_back_to_its_tier_once_and_it_sells_again(client, login, ladder, rt):
    # given the ladder sold out, one first-tier order left unpaid past its deadline
    sku, session, pin = ladder
    ids = [buy(client, login(f"a{i}"), sku, session).json["id"] for i in range(4)]
    assert buy(client, login("late"), sku, session).status_code == 409
    overdue(ids[0])
    # when the expiry job runs twice
    assert maintenance.expire_unpaid_orders() == 1
    assert maintenance.expire_unpaid_orders() == 0
    # then its tier-1 place is back exactly once, and the next buyer gets it at the tier-1 price
    assert tier_counts(pin.id) == [(2, 1, 1), (2, 2, 2)]
    again = buy(client, login("next"), sku, session)
    assert again.status_code == 201 and again.json["amount_fen"] == 990
    assert buy(client, login("after"), sku, session).status_code == 409
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]


def test_a_refund_gives_the_place_back_once_and_it_sells_again(client, login, fake_pay, ladder):
    # given a sold-out ladder whose third order (tier 2) is paid
    sku, session, pin = ladder
    buyers = [login(f"a{i}") for i in range(4)]
    orders = [buy(client, auth, sku, session).json for auth in buyers]
    assert client.post(f"{ORDERS}/{orders[2]['id']}/pay", headers=buyers[2]).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(orders[2]["no"]))
    # when it is refunded (the job, twice)
    assert delivery_jobs.refund_order(orders[2]["id"], "test") == "succeeded"
    assert delivery_jobs.refund_order(orders[2]["id"], "test") == "succeeded"
    # then tier 2 has one place again, once, and the next buyer pays tier 2's price
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 1, 1)]
    again = buy(client, login("next"), sku, session)
    assert again.status_code == 201 and again.json["amount_fen"] == 1990
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 2, 2)]


def test_a_late_payment_takes_its_place_back_only_if_its_tier_has_room(rt, ladder):
    # given two first-tier orders that expired, and one of their places sold again meanwhile
    sku, session, pin = ladder
    first, _ = live_order(sku, session.id, "a", redis=rt.redis)
    second, _ = live_order(sku, session.id, "b", redis=rt.redis)
    overdue(first.id, second.id)
    maintenance.expire_unpaid_orders()
    third, _ = live_order(sku, session.id, "c", redis=rt.redis)
    assert third.unit_price_fen == 990
    # when both late payments arrive
    with db.connection_context():
        _, one = payments.confirm_payment(first.no, "tx-a", 990, source="test")
        _, two = payments.confirm_payment(second.no, "tx-b", 990, source="test")
    # then the first takes the free tier-1 place back, the second is refunded (its tier is full)
    assert (one, two) == (payments.Outcome.PAID, payments.Outcome.REFUND)
    assert tier_counts(pin.id) == [(2, 2, 2), (2, 0, 0)]


def test_a_replay_of_a_placed_order_gets_it_back_even_when_sold_out(client, login, ladder):
    # given a buyer's order and then a sold-out ladder
    sku, session, _ = ladder
    auth = login("a")
    first = buy(client, auth, sku, session, key="live-key-1")
    for i in range(3):
        buy(client, login(f"b{i}"), sku, session)
    # when the buyer's app retries with the same Idempotency-Key
    again = buy(client, auth, sku, session, key="live-key-1")
    # then it gets its order back (200), not a refusal
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    # and the same key with another body is a conflict
    assert buy(client, auth, sku, session, key="live-key-1", quantity=2).json["error"]["code"] == "idempotency_conflict"


def test_a_session_not_on_air_sells_no_live_price(client, login, shop):
    # given a ladder on a session that is only scheduled
    sku = shop.card_sku(keys=3, price=RETAIL)
    session, pin = laddered(sku, ((2, 990),), on_air=False)
    # when a buyer orders in its room, then it is refused and nothing is written
    refused = buy(client, login("a"), sku, session)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "live_not_on_air"
    assert tier_counts(pin.id) == [(2, 0, 0)]


def test_a_product_not_pinned_in_the_session_sells_at_its_catalog_price(client, login, ladder, shop):
    # given a live session and a product that is not pinned there
    _, session, _ = ladder
    other = shop.card_sku(keys=2, price=1500)
    # when a buyer orders it naming the session, then it is an ordinary order
    answer = buy(client, login("a"), other, session)
    assert answer.status_code == 201 and answer.json["amount_fen"] == 1500


def test_the_shelf_running_out_before_the_ladder_refuses_cleanly(rt, shop):
    # given a ladder of 5 places over only 2 keys
    sku = shop.card_sku(keys=2, price=RETAIL)
    session, pin = laddered(sku, ((5, 990),))
    live_order(sku, session.id, "a", redis=rt.redis)
    live_order(sku, session.id, "b", redis=rt.redis)
    # when a third buyer orders, then it is out of stock, its place is not taken
    with pytest.raises(OutOfStock):
        live_order(sku, session.id, "c", redis=rt.redis)
    assert tier_counts(pin.id) == [(5, 2, 2)]
    # and the gate now refuses at once
    assert int(rt.redis.get(live_gate.key(pin.id))) == 0


def test_commission_is_computed_on_the_tier_price_paid(rt, shop):
    # given a seller's session selling a 99-yuan SKU (cost 49.50, 10%) at a 59-yuan tier
    (seller,) = chain(1)
    sku = shop.card_sku(keys=2, price=RETAIL)
    with db.connection_context():
        sku.__class__.update(commission_bp=1000).where(sku.__class__.id == sku.id).execute()
    session, _ = laddered(sku, ((5, 5900),), seller=seller)
    order, _ = live_order(sku, session.id, "a", redis=rt.redis)
    with db.connection_context():
        payments.confirm_payment(order.no, "tx-c", 5900, source="test")
    # when it settles, then the seller's line is 10% of 59 yuan (not of retail)
    settle(rt)
    assert order.amount_fen == 5900
    assert lines_of(order.id) == {(seller.id, "sale"): 590}
    with db.connection_context():
        assert Order.get_by_id(order.id).status == Status.PAID


def unlocked_assist(sku, session_id: int, openid: str) -> None:  # noqa: ANN001
    """`openid` starts an assist for the pinned SKU and one friend helps it (offers need one)."""
    from models import assist, assist_help

    with db.connection_context():
        mine, _ = assist.start(buyer(openid).id, session_id, sku.code)
        assist_help.help_assist(buyer(f"friend-of-{openid}").id, mine.token, ip="10.9.9.9",
                                policy=assist.AssistPolicy())


def test_an_unlocked_assist_buys_once_at_its_price_and_an_expiry_frees_it(rt, shop):
    # given a pin with an assist offer (69 yuan after one helper) and no ladder, unlocked by a buyer
    sku = shop.card_sku(keys=5, price=RETAIL)
    session_id, _ = assist_session(sku, helpers_needed=1, price_fen=6900)
    unlocked_assist(sku, session_id, "a")
    # when the buyer orders twice in the live room
    first, _ = live_order(sku, session_id, "a", redis=rt.redis)
    second, _ = live_order(sku, session_id, "a", redis=rt.redis)
    # then the first pays the assist price (recorded with its assist), the second the catalog price
    assert (first.unit_price_fen, second.unit_price_fen) == (6900, RETAIL)
    with db.connection_context():
        assert live_prices.price_of(first.id).assist_id is not None
        assert live_prices.price_of(second.id).assist_id is None
    # and when the first order expires unpaid, the assist is free again for the next order
    overdue(first.id)
    maintenance.expire_unpaid_orders()
    third, _ = live_order(sku, session_id, "a", redis=rt.redis)
    assert third.unit_price_fen == 6900


def test_an_assist_on_a_ladder_pin_takes_a_place_and_pays_the_lower_price(rt, shop):
    # given a pin with an assist (69 yuan) and a ladder of 1 place at 59 then 1 at 89
    sku = shop.card_sku(keys=5, price=RETAIL)
    session_id, pin_id = assist_session(sku, helpers_needed=1, price_fen=6900)
    with db.connection_context(), db.atomic():
        live_prices.save_ladder(pin_id, [live_prices.TierSpec(1, 5900), live_prices.TierSpec(1, 8900)])
    unlocked_assist(sku, session_id, "a")
    # when the assist holder buys first and then someone else
    first, _ = live_order(sku, session_id, "a", redis=rt.redis)
    second, _ = live_order(sku, session_id, "b", redis=rt.redis)
    # then the holder pays the tier price (lower than the assist's) and the assist stays unused;
    # the second buyer takes the second tier; the ladder is then sold out for everyone
    assert (first.unit_price_fen, second.unit_price_fen) == (5900, 8900)
    with pytest.raises(SoldOut):
        live_order(sku, session_id, "a", redis=rt.redis)
    assert tier_counts(pin_id) == [(1, 1, 1), (1, 1, 1)]


def test_an_assist_only_pin_outside_the_session_is_an_ordinary_order(rt, shop):
    # given a product pinned with an assist offer (no ladder) in a session that is only scheduled
    sku = shop.card_sku(keys=2, price=RETAIL)
    session_id, _ = assist_session(sku, state="scheduled", helpers_needed=1, price_fen=6900)
    # when a buyer orders it naming the session, then it sells at the catalog price, untracked
    order, created = live_order(sku, session_id, "a", redis=rt.redis)
    assert created and order.unit_price_fen == RETAIL
    with db.connection_context():
        assert live_prices.price_of(order.id) is None


def test_a_late_payment_at_an_assist_price_is_refunded_when_the_assist_was_used_again(rt, shop):
    # given an order at the assist price that expired, and the freed assist used by a new order
    sku = shop.card_sku(keys=5, price=RETAIL)
    session_id, _ = assist_session(sku, helpers_needed=1, price_fen=6900)
    unlocked_assist(sku, session_id, "a")
    first, _ = live_order(sku, session_id, "a", redis=rt.redis)
    overdue(first.id)
    maintenance.expire_unpaid_orders()
    second, _ = live_order(sku, session_id, "a", redis=rt.redis)
    assert second.unit_price_fen == 6900
    # when the first order's payment arrives late, then it is refunded: one assist, one order
    with db.connection_context():
        _, outcome = payments.confirm_payment(first.no, "tx-late", 6900, source="test")
    assert outcome == payments.Outcome.REFUND
