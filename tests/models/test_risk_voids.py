"""Voiding a beneficiary's commission (`reversals.void_lines`, the risk engine's self-purchase
effect) on both backends: pending and already available money, once only, and a random mix of
voids, releases and refunds after which `settlement.verify` and the ledger stay exact."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import reversals
from models.db import db
from models.events import Event
from tests.books import assert_books_clean, bucket, lines_of, release, settle, state_of
from tests.factories import chain, make_sku, mark_refunded, named, paid_order


def void(*pairs: tuple[int, int]) -> dict[str, int]:
    with db.connection_context():
        return reversals.void_lines(list(pairs), reason="test", actor="test")


def test_voiding_a_pending_beneficiary_gives_their_share_back_and_only_once(rt, shop):
    # given a settled order paying a seller and their parent
    up1, seller = chain(2, 1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    # when the seller's share is voided, twice
    first = void((order, seller.id))
    second = void((order, seller.id), (order, 999_999))
    # then one void line takes the seller's net, the parent keeps theirs, and an event says so
    assert first == {"voided": 1, "fen": 1000} and second == {"voided": 0, "fen": 0}
    assert lines_of(order)[(seller.id, "void")] == -1000
    assert (bucket(seller, "pending"), bucket(up1, "pending")) == (0, 550)
    with db.connection_context():
        voided = Event.select().where((Event.topic == "commission.voided") & (Event.subject == f"order:{order}"))
        assert voided.count() == 1
    assert_books_clean()


def test_voiding_released_money_takes_it_from_available(rt, shop):
    (seller,) = chain(1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    release(rt)
    assert void((order, seller.id))["fen"] == 1000
    assert (bucket(seller, "pending"), bucket(seller, "available")) == (0, 0)
    assert state_of(order) == "available"
    assert_books_clean()


def test_two_voids_on_one_order_for_different_creators_post_separately(rt, shop):
    up1, seller = chain(2, 1)
    order = paid_order(seller, make_sku(shop))
    settle(rt)
    void((order, seller.id))
    void((order, up1.id))
    assert (bucket(seller, "pending"), bucket(up1, "pending")) == (0, 0)
    assert_books_clean()


@st.composite
def worlds(draw: st.DrawFn) -> dict:
    n = draw(st.integers(2, 5))
    parents = [None] + [draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, n)]
    ranks = [draw(st.integers(0, 6)) for _ in range(n)]
    orders = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 3000), st.integers(0, 60)),
                           min_size=1, max_size=6))
    steps = draw(st.lists(st.tuples(st.sampled_from(["void", "void", "release", "refund", "settle"]),
                                    st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=10))
    return {"parents": parents, "ranks": ranks, "orders": orders, "steps": steps}


@h_settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
def test_random_voids_releases_and_refunds_keep_the_books_exact(rt, shop, world):
    from tests.conftest import _truncate

    _truncate()
    # given a random tree and random orders (some with markup, some below cost), settled
    made = []
    for i, (parent, rank) in enumerate(zip(world["parents"], world["ranks"], strict=True)):
        made.append(named(f"v{i}", parent=made[parent] if parent is not None else None, rank=rank))
    sku = make_sku(shop, commission_bp=1500)
    ids = [paid_order(made[s], sku, amount=10_000 + markup, markup=markup, cost=cost_pct * 100)
           for s, markup, cost_pct in world["orders"]]
    settle(rt)
    # when voids (of the seller or an upline), releases, refunds and settlements happen in any order
    for kind, which, level in world["steps"]:
        order = ids[which % len(ids)]
        seller = made[world["orders"][which % len(ids)][0]]
        if kind == "void":
            target = [seller.id, seller.parent_id, seller.grandparent_id][level]
            if target is not None:
                void((order, target))
        elif kind == "release":
            release(rt)
        elif kind == "refund":
            mark_refunded(order)
            with db.connection_context():
                reversals.reverse_refunded()
        else:
            settle(rt)
        # then the books are exact after every step
        assert_books_clean()
