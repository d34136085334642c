"""The creator network: first binding wins, no self-binding, no cycles, operator-only rebinding
with an audit event and the children's grandparent moved along, the team view in one query, and
order attribution that ignores unknown codes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from models import network
from models.db import db
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event
from models.live import start_live
from models.network import NO_ATTRIBUTION, Creator
from models.orders import Order
from tests.factories import chain, fresh, make_sku, named, paid_order


def events(topic: str) -> list[Event]:
    with db.connection_context():
        return list(Event.select().where(Event.topic == topic).order_by(Event.id))


def bind(c: Creator, code: str, via: str = "typed") -> Creator:
    with db.connection_context():
        return network.bind(c, code, via)


def rebind(c: Creator, code: str | None) -> Creator:
    with db.connection_context():
        return network.rebind(c, code, actor="operator:test", reason="support ticket 7")


# -- binding ------------------------------------------------------------------------------------

def test_first_valid_binding_wins_and_stores_parent_and_grandparent(rt):
    # given a parent under a grandparent, another creator, and a newcomer
    grand, parent = chain(0, 0, prefix="b")
    other = named("other")
    newcomer = named("newcomer")
    # when the newcomer binds through a Telegram deep link, then tries a second code
    bound = bind(newcomer, parent.code, "telegram")
    with pytest.raises(Conflict) as exc:
        bind(newcomer, other.code, "wechat_qr")
    # then the first binding stands, with its grandparent stored, and one audit event
    assert exc.value.code == "already_bound"
    assert (bound.parent_id, bound.grandparent_id, bound.bound_via) == (parent.id, grand.id, "telegram")
    assert fresh(newcomer).parent_id == parent.id
    assert [(e.subject, e.payload) for e in events("creator.bound")][-1] == (
        f"creator:{newcomer.id}", {"parent": parent.id, "via": "telegram"})
    # and the same code again is a harmless no-op
    assert bind(newcomer, parent.code).parent_id == parent.id
    assert len(events("creator.bound")) == 2  # parent's own binding and the newcomer's


def test_self_binding_is_refused(rt):
    me = named("me")
    with pytest.raises(InvalidInput) as exc:
        bind(me, me.code)
    assert exc.value.code == "self_binding"
    assert fresh(me).parent_id is None and events("creator.bound") == []


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_binding_under_ones_own_downline_is_a_refused_cycle(rt, depth):
    # given a root with a downline `depth` levels deep
    line = chain(*[0] * (depth + 1), prefix="cyc")
    root, deepest = line[0], line[-1]
    before = len(events("creator.bound"))
    # when the (unbound) root tries to bind under its own downline
    with pytest.raises(InvalidInput) as exc:
        bind(root, deepest.code)
    # then it is refused and nothing changes
    assert exc.value.code == "invite_cycle"
    assert fresh(root).parent_id is None and len(events("creator.bound")) == before


@pytest.mark.parametrize(("code", "error", "code_name"), [
    ("NOPE1234", NotFound, "unknown_invite_code"),
    ("ab", InvalidInput, "invalid_invite_code"),
    ("has space", InvalidInput, "invalid_invite_code"),
    ("x" * 33, InvalidInput, "invalid_invite_code"),
    ("'; DROP TABLE creator; --", InvalidInput, "invalid_invite_code"),
])
def test_unknown_or_malformed_codes_are_refused(rt, code, error, code_name):
    me = named("me")
    with pytest.raises(error) as exc:
        bind(me, code)
    assert exc.value.code == code_name
    assert fresh(me).parent_id is None


def test_an_inactive_creators_code_is_unknown(rt):
    gone, me = named("gone", active=False), named("me")
    with pytest.raises(NotFound):
        bind(me, gone.code)


# -- operator rebinding -----------------------------------------------------------------------

def test_operator_rebind_moves_the_creator_and_its_childrens_grandparent(rt):
    # given old -> moved -> child -> grandchild, and a new parent under its own parent
    old, moved, child, grandchild = chain(0, 0, 0, 0, prefix="rb")
    new_grand, new_parent = chain(0, 0, prefix="np")
    # when an operator moves `moved` under `new_parent`
    rebind(moved, new_parent.code)
    # then its row, its children's grandparent and nothing deeper changed, with an audit event
    m, c, g = fresh(moved), fresh(child), fresh(grandchild)
    assert (m.parent_id, m.grandparent_id, m.bound_via) == (new_parent.id, new_grand.id, "operator")
    assert (c.parent_id, c.grandparent_id) == (moved.id, new_parent.id)
    assert (g.parent_id, g.grandparent_id) == (child.id, moved.id)
    (event,) = events("creator.rebound")
    assert (event.subject, event.actor) == (f"creator:{moved.id}", "operator:test")
    assert event.payload == {"old_parent": old.id, "new_parent": new_parent.id, "reason": "support ticket 7"}
    # and a second-level team query for the old root no longer sees them
    with db.connection_context():
        assert network.team(old).direct == [] and network.team(old).second == 0


def test_operator_rebind_refuses_cycles_and_can_detach(rt):
    top, mid, low = chain(0, 0, 0, prefix="rc")
    # when an operator would move the top under its own grandchild
    with pytest.raises(InvalidInput) as exc:
        rebind(top, low.code)
    assert exc.value.code == "invite_cycle" and events("creator.rebound") == []
    # when the operator detaches the middle one
    rebind(mid, None)
    # then it is a root again and its child's grandparent is gone
    assert (fresh(mid).parent_id, fresh(mid).grandparent_id) == (None, None)
    assert (fresh(low).parent_id, fresh(low).grandparent_id) == (mid.id, None)
    assert events("creator.rebound")[-1].payload["new_parent"] is None


# -- the team view ----------------------------------------------------------------------------

@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """Every SQL statement the database runs inside the block."""
    seen: list[str] = []
    original = db.obj.execute_sql

    def spy(sql, params=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(sql)
        return original(sql, params, *args, **kwargs)

    db.obj.execute_sql = spy
    try:
        yield seen
    finally:
        del db.obj.execute_sql


def test_team_view_is_one_query_with_sizes_and_gmv(rt, shop):
    # given root with two direct members, one of whom has two members of their own, and a
    # third-level member that is not part of the root's team
    root = named("root")
    a, b = named("a", parent=root), named("b", parent=root)
    a1, a2 = named("a1", parent=a), named("a2", parent=a)
    named("a1x", parent=a1)
    sku = make_sku(shop)
    paid_order(a, sku, amount=3_000)
    paid_order(a, sku, amount=2_000)
    paid_order(a1, sku, amount=7_000)
    refunded = paid_order(b, sku, amount=9_999)
    with db.connection_context():
        Order.update(status="refunded").where(Order.id == refunded).execute()
    # when the team is read
    with db.connection_context(), counted_statements() as statements:
        team = network.team(root)
    # then it took one statement, and sizes and GMV count paid orders only
    assert len(statements) == 1
    assert team.as_dict()["direct_size"] == 2 and team.second == 2
    assert (team.direct_gmv_fen, team.second_gmv_fen) == (5_000, 7_000)
    members = {m.code: m for m in team.direct}
    assert (members[a.code].gmv_fen, members[a.code].orders, len(members[a.code].children)) == (5_000, 2, 2)
    assert (members[b.code].gmv_fen, members[b.code].orders) == (0, 0)
    assert sorted(ch.code for ch in members[a.code].children) == sorted([a1.code, a2.code])


# -- attribution ------------------------------------------------------------------------------

def test_attribute_ignores_unknown_and_inactive_codes(rt, shop):
    sku = make_sku(shop)
    gone = named("gone", active=False)
    with db.connection_context():
        assert network.attribute(None, sku.id, None) == NO_ATTRIBUTION
        assert network.attribute("", sku.id, None) == NO_ATTRIBUTION
        assert network.attribute("NOBODY99", sku.id, None) == NO_ATTRIBUTION
        assert network.attribute(gone.code, sku.id, None) == NO_ATTRIBUTION


def test_attribute_finds_the_seller_markup_and_only_their_own_live(rt, shop, settings):
    seller, other = named("seller", rank=1), named("other")
    sku = make_sku(shop)
    with db.connection_context():
        network.set_markup(seller, sku.code, 700, default_cap_bp=settings.DEFAULT_MAX_MARKUP_BP)
        mine, theirs = start_live(seller), start_live(other)
        got = network.attribute(seller.code, sku.id, mine.id)
        foreign = network.attribute(seller.code, sku.id, theirs.id)
        plain = network.attribute(other.code, sku.id, None)
    assert (got.seller_id, got.markup_per_unit_fen, got.live_id) == (seller.id, 700, mine.id)
    assert (foreign.seller_id, foreign.live_id) == (seller.id, None)
    assert (plain.seller_id, plain.markup_per_unit_fen) == (other.id, 0)


def test_two_creators_binding_to_each_other_at_once_never_make_a_cycle(rt):
    # given pairs of unbound creators
    import threading

    pairs = [(named(f"x{i}"), named(f"y{i}")) for i in range(15)]
    outcomes: list[str] = []

    def try_bind(c: Creator, code: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            with db.connection_context():
                network.bind(c, code, "typed")
            outcomes.append("bound")
        except InvalidInput as exc:
            outcomes.append(exc.code)

    # when each pair binds to each other at the same moment
    for x, y in pairs:
        start = threading.Barrier(2)
        threads = [threading.Thread(target=try_bind, args=(x, y.code, start)),
                   threading.Thread(target=try_bind, args=(y, x.code, start))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # then exactly one of each pair is bound and the other was refused as a cycle
    assert Counter(outcomes) == {"bound": len(pairs), "invite_cycle": len(pairs)}
    for x, y in pairs:
        assert (fresh(x).parent_id is None) != (fresh(y).parent_id is None)
