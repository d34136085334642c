"""Money invariants, property-tested.

1. `commission.split` alone, over any inputs (fast, many examples): no negative line, the total
   never above floor(max(margin, 0) x cap / 10000), each line never above its raw amount, the
   cap handed out in priority order, nothing beyond `upline_depth`.
2. The whole settlement life cycle on the database (few examples): random trees (up to nine
   levels deep), random star levels, random SKU rates, markups and costs, random orders (some at a loss,
   some on risk hold), then a random history of settling (sometimes twice), releasing,
   refunding before or after release, and withdrawing. After every step: every ledger
   transaction balances and `settlement.verify()` is clean. At the end: nobody but the seller
   and the seller's two stored uplines holds a line, each order's payout is within its cap and
   exactly what `split` gives, and settling once more changes nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, event, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import reversals, settlement, withdrawals
from models.commission import BP, OrderFacts, seller_rate, split
from models.db import db
from models.errors import Conflict
from models.levels import Rates
from models.network import Creator
from models.orders import Order
from models.settlement import Commission, Settlement
from tests.books import assert_books_clean, bucket, release, snapshot
from tests.factories import make_sku, mark_refunded, named, paid_order

# -- the pure rule ----------------------------------------------------------------------------

fen = st.integers(min_value=0, max_value=10_000_000)
rate = st.integers(min_value=-500, max_value=BP)


@h_settings(max_examples=1500, deadline=None)
@given(amount=fen, markup=fen, cost=fen, seller=rate, up1=rate, up2=rate,
       cap=st.integers(0, BP), depth=st.integers(0, 2))
def test_split_never_pays_more_than_the_cap_or_the_rule(amount, markup, cost, seller, up1, up2, cap, depth):
    f = OrderFacts(amount_fen=amount, markup_fen=markup, cost_fen=cost, seller_rate_bp=seller,
                   upline1_rate_bp=up1, upline2_rate_bp=up2)
    got = split(f, cap_bp=cap, upline_depth=depth)
    lines = [got.markup, got.sale, got.team1, got.team2]
    # no line is negative and the total stays within the rounded-down cap
    assert all(v >= 0 for v in lines)
    assert got.total <= max(amount - cost, 0) * cap // BP
    # each line is at most its raw amount, rounded down
    kept_markup = min(markup, amount)
    base = amount - kept_markup
    raw = [kept_markup, base * max(seller, 0) // BP,
           base * max(up1, 0) // BP if depth >= 1 else 0,
           base * max(up2, 0) // BP if depth >= 2 else 0]
    assert all(v <= r for v, r in zip(lines, raw, strict=True))
    # nobody beyond the configured depth is paid
    assert (depth >= 1 or got.team1 == 0) and (depth >= 2 or got.team2 == 0)
    # priority: a line gets something only when every line before it is paid in full
    for i in range(1, 4):
        if lines[i] > 0:
            assert lines[:i] == raw[:i]
    # and the cap is used up whenever some line is cut
    if lines != raw:
        assert got.total == max(amount - cost, 0) * cap // BP


@h_settings(max_examples=300, deadline=None)
@given(amount=fen, markup=fen, cost=fen, seller=rate, up1=rate, up2=rate,
       caps=st.tuples(st.integers(0, BP), st.integers(0, BP)))
def test_a_higher_cap_never_pays_less(amount, markup, cost, seller, up1, up2, caps):
    f = OrderFacts(amount, markup, cost, seller, up1, up2)
    low, high = sorted(caps)
    assert split(f, cap_bp=low).total <= split(f, cap_bp=high).total


# -- the settlement life cycle ----------------------------------------------------------------

@st.composite
def worlds(draw: st.DrawFn) -> dict:
    n = draw(st.integers(2, 9))
    parents: list[int | None] = [None]
    for i in range(1, n):
        # a chain-friendly choice: often the previous creator, so trees get deep (up to ~6+)
        parents.append(draw(st.one_of(st.none(), st.just(i - 1), st.integers(0, i - 1))))
    ranks = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    skus = draw(st.lists(st.tuples(st.integers(1000, 3000), st.sampled_from([990, 1990, 10_000, 49_900])),
                         min_size=1, max_size=3))
    orders = draw(st.lists(st.fixed_dictionaries({
        "seller": st.one_of(st.none(), st.integers(0, n - 1)),
        "sku": st.integers(0, len(skus) - 1),
        "markup_pct": st.integers(0, 30),
        "cost_pct": st.integers(0, 130),  # above 100: sold at a loss
        "hold": st.booleans(),
    }), min_size=1, max_size=10))
    # a history that starts with a settlement; refunds and withdrawals name an order (the
    # withdrawal is by its seller, who may hold money), so releases, clawbacks and debts happen
    kinds = st.sampled_from(["settle", "settle", "settle_twice", "release", "release", "refund",
                             "refund", "withdraw", "withdraw"])
    steps = [("settle", 0)] + draw(st.lists(st.tuples(kinds, st.integers(0, len(orders) - 1)),
                                            min_size=2, max_size=10))
    return {"parents": parents, "ranks": ranks, "skus": skus, "orders": orders, "steps": steps}


@h_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
def test_random_trees_orders_refunds_and_withdrawals_keep_the_money_exact(rt, shop, world):
    from tests.conftest import _truncate

    _truncate()  # each example starts from an empty database
    # given a random tree with random levels
    made: list[Creator] = []
    for i, (parent, rank) in enumerate(zip(world["parents"], world["ranks"], strict=True)):
        made.append(named(f"p{i}", parent=made[parent] if parent is not None else None, rank=rank))
    # and random SKUs and paid orders
    skus = [make_sku(shop, price=price, commission_bp=bp) for bp, price in world["skus"]]
    order_ids = []
    for o in world["orders"]:
        sku = skus[o["sku"]]
        markup = sku.retail_price_fen * o["markup_pct"] // 100
        amount = sku.retail_price_fen + markup
        order_ids.append(paid_order(made[o["seller"]] if o["seller"] is not None else None, sku,
                                    amount=amount, cost=sku.supply_price_fen * o["cost_pct"] // 50,
                                    markup=markup, risk_hold=o["hold"]))
    assume(order_ids)
    # when a random history happens, the books stay exact after every step
    for step in world["steps"]:
        if step[0] in ("settle", "settle_twice"):
            with db.connection_context():
                settlement.settle(rt.payout, batch=3)
            if step[0] == "settle_twice":
                before = snapshot()
                with db.connection_context():
                    assert settlement.settle(rt.payout, batch=3).orders == 0
                assert snapshot() == before
        elif step[0] == "release":
            release(rt)
        elif step[0] == "refund":
            mark_refunded(order_ids[step[1]])
            with db.connection_context():
                reversals.reverse_refunded()
        else:
            seller = world["orders"][step[1]]["seller"]
            if seller is None:
                continue
            creator = made[seller]
            owed = bucket(creator, "available")
            if owed > 0:
                event("withdrew")
                with db.connection_context():
                    withdrawals.request_withdrawal(creator, owed, "credit",
                                                   policy=withdrawals.WithdrawPolicy(min_fen=1))
            elif owed < 0:  # in debt: refused, never capped
                event("in debt")
                try:
                    with db.connection_context():
                        withdrawals.request_withdrawal(creator, 1, "credit",
                                                       policy=withdrawals.WithdrawPolicy(min_fen=1))
                    raise AssertionError("a creator in debt withdrew")
                except Conflict as exc:
                    assert exc.code == "in_debt"
        assert_books_clean()
    # then settling once more changes nothing
    before = snapshot()
    with db.connection_context():
        settlement.settle(rt.payout)
    again = snapshot()
    assert_books_clean()
    event(f"settlement states {sorted({r[1] for r in again[0]})}")
    settled_now = {r[0] for r in before[0]}
    assert {k: v for k, v in again[1].items() if k[0] in settled_now} == before[1]
    # and every line belongs to the seller or one of the seller's two stored uplines, with the
    # amounts `split` gives, within the cap
    with db.connection_context():
        rates = Rates.load()
        tree = {c.id: c for c in Creator.select()}
        sku_rate = {s.id: s.commission_bp for s in skus}
        lines: dict[int, dict[tuple[int, str], int]] = {}
        for c in Commission.select():
            lines.setdefault(c.order_id, {})[(c.creator_id, c.kind)] = c.amount_fen
        for st_row in Settlement.select():
            order = Order.get_by_id(st_row.order_id)
            got = lines.get(order.id, {})
            seller = tree.get(order.seller_id)
            allowed = set()
            if seller is not None:
                allowed = {(seller.id, "markup"), (seller.id, "sale"), (seller.parent_id, "team1"),
                           (seller.grandparent_id, "team2")}
            assert set(got) <= allowed, (order.id, got, allowed)
            cap = max(order.amount_fen - order.cost_fen, 0) * rt.payout.cap_bp // BP
            assert sum(got.values()) == st_row.payout_fen <= cap
            if seller is None:
                assert got == {}
                continue
            up1, up2 = tree.get(seller.parent_id), tree.get(seller.grandparent_id)
            want = split(OrderFacts(
                order.amount_fen, order.markup_fen, order.cost_fen,
                seller_rate(sku_rate[order.sku_id], rates.own.get(seller.rank, 0)),
                rates.team1.get(up1.rank, 0) if up1 else 0, rates.team2.get(up2.rank, 0) if up2 else 0),
                cap_bp=rt.payout.cap_bp, upline_depth=rt.payout.upline_depth)
            expected = {(seller.id, "markup"): want.markup, (seller.id, "sale"): want.sale,
                        (seller.parent_id, "team1"): want.team1, (seller.grandparent_id, "team2"): want.team2}
            assert got == {k: v for k, v in expected.items() if v > 0}
