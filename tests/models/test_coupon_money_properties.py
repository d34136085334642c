"""Coupon money, property-tested on the database (both backends, few examples): random sellers
(with or without a parent), markups, and orders with random platform and creator-funded
discounts, paid, settled, some refunded before the refund window ends and some after (a
clawback), then settled again. After every step every ledger transaction balances and
`settlement.verify()` is clean; at the end:
- no creator's lines on an order sum below zero, and no creator bucket is negative;
- a seller funds exactly r = min(creator discount, markup + sale lines) of their coupon;
- `expense:discounts` is exactly the platform-funded part of the sold orders' discounts
  (discount - r), cash and sales are the sold orders' net and gross amounts.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import ledger, network, payments, reversals
from models.db import db
from models.orders import Order
from models.settlement import Commission
from qianxing.gateways.payments import SandboxGateway
from tests.books import assert_books_clean, release, settle, snapshot
from tests.factories import chain, discounted

PRICES = (1990, 10_000, 49_900)


@st.composite
def worlds(draw: st.DrawFn) -> dict:
    return {
        "parent_rank": draw(st.one_of(st.none(), st.integers(0, 6))),
        "seller_rank": draw(st.integers(0, 6)),
        "markup_pct": draw(st.integers(0, 30)),
        "orders": draw(st.lists(st.fixed_dictionaries({
            "price": st.sampled_from(PRICES),
            "via_seller": st.booleans(),
            "platform_pct": st.integers(0, 50),
            "creator_pct": st.integers(0, 60),
            "refund": st.sampled_from([None, None, "before", "after"]),
        }), min_size=1, max_size=6)),
    }


@h_settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
def test_random_discounts_keep_every_account_exact(rt, shop, world):
    from tests.conftest import APPID, MCH_ID, PAY_KEY, _truncate

    _truncate()  # each example starts from an empty database
    gateway = SandboxGateway(APPID, MCH_ID, PAY_KEY, "http://127.0.0.1:9/notify")
    # given a seller (maybe under a parent) with a markup on every SKU
    if world["parent_rank"] is None:
        (seller,) = chain(world["seller_rank"])
    else:
        _, seller = chain(world["parent_rank"], world["seller_rank"])
    skus = {price: shop.card_sku(keys=len(world["orders"]), price=price) for price in PRICES}
    with db.connection_context():
        for price, sku in skus.items():
            network.set_markup(seller, sku.code, price * world["markup_pct"] // 100, default_cap_bp=10_000)
    # and random orders with a platform coupon and, through the seller's link, the seller's coupon
    placed = []
    for i, o in enumerate(world["orders"]):
        gross = o["price"] + (o["price"] * world["markup_pct"] // 100 if o["via_seller"] else 0)
        creator = gross * o["creator_pct"] // 100 if o["via_seller"] else 0
        total = min(creator + gross * o["platform_pct"] // 100, gross - 1)
        creator = min(creator, total)
        order = discounted(skus[o["price"]], f"pb{i}", ref=seller.code if o["via_seller"] else None,
                           discount=total, creator_discount=creator)
        assert order.amount_fen == gross - total
        placed.append((order, o["refund"]))
    # when they are paid and settled
    with db.connection_context():
        for order, _ in placed:
            payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen, source="test")
    settle(rt)
    assert_books_clean()
    # and some are refunded inside the refund window, the rest released, some refunded after
    for when in ("before", "after"):
        with db.connection_context():
            for order, refund in placed:
                if refund == when:
                    payments.refund_order(order.id, gateway, actor="operator:test", reason="property")
            reversals.reverse_refunded()
        assert_books_clean()
        if when == "before":
            release(rt)
            assert_books_clean()
    before = snapshot()
    settle(rt)
    assert snapshot() == before  # settling again changes nothing
    # then nobody earns less than nothing on an order, and no bucket is negative
    with db.connection_context():
        per_order: dict[tuple[int, int], int] = defaultdict(int)
        lines: dict[int, dict[str, int]] = defaultdict(dict)
        for c in Commission.select():
            per_order[(c.order_id, c.creator_id)] += c.amount_fen
            if c.creator_id == seller.id:
                lines[c.order_id][c.kind] = c.amount_fen
        assert all(v >= 0 for v in per_order.values())
        for bucket in (ledger.PENDING, ledger.AVAILABLE):
            assert ledger.owed_to_creator(seller.id, (bucket,))[bucket] >= 0
        # and each seller funds exactly min(their coupon, their markup + sale) of it
        expected_discounts = cash = sales = 0
        for order, refund in placed:
            row = Order.get_by_id(order.id)
            got = lines.get(order.id, {})
            funded = -got.get("coupon", 0)
            if got:
                assert funded == min(row.creator_discount_fen, got.get("markup", 0) + got.get("sale", 0))
            if refund is None:
                expected_discounts += row.discount_fen - funded
                cash += row.amount_fen
                sales -= row.amount_fen + row.discount_fen
        # and the discount expense is exactly the platform-funded part of what was sold
        assert ledger.balances([ledger.DISCOUNT_EXPENSE, ledger.CASH_WECHATPAY, ledger.SALES]) == {
            ledger.DISCOUNT_EXPENSE: expected_discounts, ledger.CASH_WECHATPAY: cash, ledger.SALES: sales}
