"""The earnings-center services: balances by state (signs turned to the creator's side, debts
shown as debts), the statement and its CSV export, commission lines, joining and products,
all over real orders, real settlement and the real ledger."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import earnings, ledger, network, orders, reversals, settlement
from models.db import db
from models.errors import Conflict, InvalidInput, NotFound
from models.events import Event
from models.network import Creator, CreatorPrice
from models.users import User
from tests.books import release, settle
from tests.factories import buyer, named, sell


def reverse(order_id: int, reason: str = "fraud") -> None:
    with db.connection_context():
        reversals.reverse([order_id], reason=reason, actor="operator:test")


def balances(creator: Creator) -> dict:
    with db.connection_context():
        return earnings.balances(creator)


ZERO = {"pending_fen": 0, "available_fen": 0, "withdrawing_fen": 0, "credit_fen": 0, "debt_fen": 0}


@pytest.fixture
def team(rt, shop):  # noqa: ANN001, ANN201
    """Ann (one-star) invited Ben (not yet a star); a 100-yuan card with a 50-yuan supply price.
    Ben's sale earns him the SKU's 10% = 1000 fen and Ann her one-star team rate 5% = 500."""
    sku = shop.card_sku(keys=40, price=10_000, code="CARD-E")
    ann = named("ann", rank=1)
    ben = named("ben", parent=ann)
    return sku, ann, ben


# -- balances ---------------------------------------------------------------------------------

def test_balances_follow_the_commission_life_cycle(rt, team):
    sku, ann, ben = team
    # given nothing sold yet
    assert balances(ben) == ZERO
    # when Ben sells once and the order is settled
    first = sell(rt, sku.code, ben.code)
    settle(rt)
    # then the money is pending, as positive fen owed to each creator
    assert balances(ben) == {**ZERO, "pending_fen": 1000}
    assert balances(ann) == {**ZERO, "pending_fen": 500}
    # when the refund window passes
    release(rt)
    # then it is available
    assert balances(ben) == {**ZERO, "available_fen": 1000}
    # when a second sale settles and the first is found fraudulent after release
    sell(rt, sku.code, ben.code)
    settle(rt)
    reverse(first)
    # then the clawback leaves nothing available and no debt yet (1000 - 1000), the new sale pending
    assert balances(ben) == {**ZERO, "pending_fen": 1000}
    assert balances(ann) == {**ZERO, "pending_fen": 500}


def test_a_clawback_below_zero_is_shown_as_debt_not_as_a_negative_balance(rt, team):
    sku, ann, ben = team
    # given two released sales of Ben's
    first, second = sell(rt, sku.code, ben.code), sell(rt, sku.code, ben.code)
    settle(rt)
    release(rt)
    # and the ledger moved part of the available money elsewhere (a withdrawal in progress)
    with db.connection_context(), db.atomic():
        ledger.post("test:withdraw", "withdrawal", [
            ledger.Leg(ledger.creator_account(ben.id, ledger.AVAILABLE), 1500),
            ledger.Leg(ledger.creator_account(ben.id, ledger.WITHDRAWING), -1500)])
    # when both orders are clawed back
    reverse(first)
    reverse(second)
    # then Ben owes 1500 (2000 clawed back from 500 left), nothing is available, and the money
    # on its way out is still shown as withdrawing
    assert balances(ben) == {**ZERO, "withdrawing_fen": 1500, "debt_fen": 1500}
    # when Ben sells again and it is released, the debt is paid off first
    sell(rt, sku.code, ben.code)
    settle(rt)
    release(rt)
    assert balances(ben) == {**ZERO, "withdrawing_fen": 1500, "debt_fen": 500}


def test_balances_read_only_the_creators_own_accounts(rt, team):
    sku, ann, ben = team
    # given a creator with an id that is a prefix of another's (creator:1 vs creator:1x)
    for i in range(12):
        named(f"filler-{i}")
    with db.connection_context():
        many = Creator.select().order_by(Creator.id.desc()).first()
        assert str(many.id).startswith(str(ann.id))
        with db.atomic():
            ledger.post("test:other", "reward", [
                ledger.Leg(ledger.REWARD_EXPENSE, 700),
                ledger.Leg(ledger.creator_account(many.id, ledger.AVAILABLE), -700)])
    # then Ann's balances do not see it
    assert balances(ann) == ZERO
    assert balances(many) == {**ZERO, "available_fen": 700}


# -- statement --------------------------------------------------------------------------------

def test_statement_lists_every_posting_newest_first_from_the_creators_side(rt, team):
    sku, ann, ben = team
    # given a sale settled, released, and another sale settled
    first = sell(rt, sku.code, ben.code)
    settle(rt)
    release(rt)
    sell(rt, sku.code, ben.code)
    settle(rt)
    # when Ben reads his statement
    with db.connection_context():
        entries = earnings.statement(ben, 50)
    # then: commission (pending +1000), release (pending -1000, available +1000), commission
    got = [(e.kind, e.bucket, e.amount_fen) for e in entries]
    assert got == [("commission", "pending", 1000), ("release", "available", 1000),
                   ("release", "pending", -1000), ("commission", "pending", 1000)]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert entries[-1].key.startswith("settle:") and entries[-1].memo == "1 orders"
    assert all(isinstance(e.created_at, dt.datetime) for e in entries)
    # and the statement sums to the balances
    b = balances(ben)
    assert sum(e.amount_fen for e in entries if e.bucket == "pending") == b["pending_fen"]
    assert sum(e.amount_fen for e in entries if e.bucket == "available") == b["available_fen"]
    assert first  # (the first order is the released one)


def test_statement_pages_by_posting_id_without_gaps_or_overlaps(rt, team):
    sku, ann, ben = team
    # given several settled batches (one order each)
    for _ in range(5):
        sell(rt, sku.code, ben.code)
        settle(rt)
    release(rt)
    with db.connection_context():
        everything = earnings.statement(ben, 500)
        # when read two at a time
        pages, before = [], None
        while True:
            page = earnings.statement(ben, 2, before)
            pages.append(page)
            if len(page) < 2:
                break
            before = page[-1].id
    # then the pages join up to the whole statement
    assert [e.id for p in pages for e in p] == [e.id for e in everything]
    assert len(everything) == 5 + 2  # five commissions, one release (two legs)


def test_csv_has_a_header_yuan_and_fen_and_defuses_formulas(rt, team):
    sku, ann, ben = team
    # given a released sale clawed back by an operator whose reason starts like a formula
    first = sell(rt, sku.code, ben.code)
    settle(rt)
    release(rt)
    reverse(first, reason='=HYPERLINK("http://evil","x")')
    with db.connection_context():
        text = earnings.statement_csv(ben)
    rows = list(csv.reader(io.StringIO(text)))
    # then a header row, one row per entry, amounts in yuan with two decimals and in fen
    assert rows[0] == list(earnings.CSV_COLUMNS)
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert [(r["kind"], r["bucket"], r["amount_yuan"], r["amount_fen"]) for r in body] == [
        ("clawback", "available", "-10.00", "-1000"), ("release", "available", "10.00", "1000"),
        ("release", "pending", "-10.00", "-1000"), ("commission", "pending", "10.00", "1000")]
    # and the formula is text (quoted), while the negative amounts stay plain numbers
    assert body[0]["memo"] == '\'=HYPERLINK("http://evil","x")'
    assert body[0]["order_id"] == "" and body[-1]["created_at_utc"][:2] == "20"


def test_csv_of_a_creator_without_entries_is_the_header_only(rt, team):
    _, ann, _ = team
    with db.connection_context():
        assert earnings.statement_csv(ann) == ",".join(earnings.CSV_COLUMNS) + "\r\n"


@pytest.mark.parametrize("fen, text", [(0, "0.00"), (5, "0.05"), (-5, "-0.05"), (100, "1.00"),
                                       (-123456, "-1234.56"), (10**15 + 1, "10000000000000.01")])
def test_yuan_is_exact(fen, text):
    assert earnings.yuan(fen) == text


@pytest.mark.parametrize("cell, safe", [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"),
                                        ("\tx", "'\tx"), ("\rx", "'\rx"), ("refund", "refund"),
                                        ("", ""), ("退款=1", "退款=1")])
def test_text_cells_starting_like_a_formula_are_quoted(cell, safe):
    assert earnings._safe_text(cell) == safe


# -- commission lines -------------------------------------------------------------------------

def test_commission_lines_carry_order_no_kind_amount_and_settlement_state(rt, team):
    sku, ann, ben = team
    # given two of Ben's sales, the first reversed while pending
    first, second = sell(rt, sku.code, ben.code), sell(rt, sku.code, ben.code)
    settle(rt)
    reverse(first)
    with db.connection_context():
        nos = {o.id: o.no for o in orders.Order.select()}
        ben_lines = earnings.commission_lines(ben, 10)
        ann_lines = earnings.commission_lines(ann, 10)
        page = earnings.commission_lines(ben, 1, ben_lines[0].id)
    # then newest first, each with its order and where its commission stands
    assert [(c.order_id, c.order_no, c.kind, c.amount_fen, c.state) for c in ben_lines] == [
        (second, nos[second], "sale", 1000, "pending"), (first, nos[first], "sale", 1000, "reversed")]
    assert [(c.order_id, c.kind, c.amount_fen) for c in ann_lines] == [(second, "team1", 500),
                                                                       (first, "team1", 500)]
    assert [c.order_id for c in page] == [first]


def test_markup_is_its_own_line(rt, team):
    sku, ann, ben = team
    # given Ben's 20-yuan markup on the card
    with db.connection_context():
        network.set_markup(ben, sku.code, 2000, default_cap_bp=rt.settings.DEFAULT_MAX_MARKUP_BP)
    # when a buyer orders through him (120 yuan) and it settles
    order_id = sell(rt, sku.code, ben.code)
    settle(rt)
    with db.connection_context():
        lines = {c.kind: c.amount_fen for c in earnings.commission_lines(ben)}
        assert orders.Order.get_by_id(order_id).amount_fen == 12_000
    # then the markup is paid in full, the sale rate applies to the retail part
    assert lines == {"markup": 2000, "sale": 1000}
    assert balances(ben)["pending_fen"] == 3000


# -- a money invariant over random histories --------------------------------------------------

@h_settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.sampled_from(["sell", "settle", "release", "reverse"]), min_size=1, max_size=8))
def test_balances_equal_the_live_commission_lines_by_state(rt, shop, steps):
    # given a fresh seller under a one-star upline for each example
    from tests.conftest import _truncate

    _truncate()
    sku = shop.card_sku(keys=10, price=10_000, code="CARD-H")
    ann = named("h-ann", rank=1)
    ben = named("h-ben", parent=ann)
    sold: list[int] = []
    # when a random history of sales, settlements, releases and reversals happens
    for step in steps:
        if step == "sell":
            sold.append(sell(rt, sku.code, ben.code))
        elif step == "settle":
            settle(rt)
        elif step == "release":
            release(rt)
        elif sold:
            reverse(sold.pop(0))
    # then each creator's balances are exactly their commission lines by settlement state
    with db.connection_context():
        for creator in (ann, ben):
            lines = earnings.commission_lines(creator, 500)
            b = earnings.balances(creator)
            assert b["pending_fen"] == sum(c.amount_fen for c in lines if c.state == "pending")
            net = b["available_fen"] - b["debt_fen"]
            assert net == sum(c.amount_fen for c in lines if c.state == "available")
            assert sum(e.amount_fen for e in earnings.statement(creator, 500)) == (
                b["pending_fen"] + net)
        assert settlement.verify() == []


# -- joining ----------------------------------------------------------------------------------

def _counts() -> tuple[int, int]:
    with db.connection_context():
        return Creator.select().count(), Event.select().count()


def test_join_without_a_code_is_idempotent(rt):
    user = buyer("newbie")
    with db.connection_context():
        first = earnings.join(user.id, name="  Newbie ")
        again = earnings.join(user.id, name="Other")
    assert (first.id, first.name, first.parent_id) == (again.id, "Newbie", None)
    assert _counts()[0] == 1


def test_join_with_a_code_binds_and_a_refused_code_writes_nothing(rt):
    ann = named("ann")
    user = buyer("newbie")
    before = _counts()
    with db.connection_context():
        # when the code is unknown
        with pytest.raises(NotFound) as unknown:
            earnings.join(user.id, invite_code="NOSUCHCODE")
        # then no creator was created for the user
        assert unknown.value.code == "unknown_invite_code"
        assert _counts() == before
        # when a good code is used
        joined = earnings.join(user.id, invite_code=ann.code, via="typed")
        assert (joined.parent_id, joined.bound_via) == (ann.id, "typed")
        # then joining again with another code is refused (first binding wins), nothing changes
        other = named("other")
        with pytest.raises(Conflict) as bound:
            earnings.join(user.id, invite_code=other.code)
        assert bound.value.code == "already_bound"
        assert Creator.get_by_id(joined.id).parent_id == ann.id


def test_joining_with_ones_own_code_or_a_downline_code_is_refused_atomically(rt):
    ann = named("ann")
    ben = named("ben", parent=ann)
    with db.connection_context():
        user_of_ann = User.get_by_id(ann.user_id)
        with pytest.raises(InvalidInput) as own:
            earnings.join(user_of_ann.id, invite_code=ann.code)
        with pytest.raises(InvalidInput) as cycle:
            earnings.join(user_of_ann.id, invite_code=ben.code)
        assert (own.value.code, cycle.value.code) == ("self_binding", "invite_cycle")
        assert Creator.get_by_id(ann.id).parent_id is None


def test_profile_names_the_level_parent_and_share_path(rt):
    ann = named("ann", rank=2)
    ben = named("ben", parent=ann)
    with db.connection_context():
        p_ann, p_ben = earnings.profile(ann), earnings.profile(ben)
    assert (p_ann.level_name, p_ann.parent_code) == ("二星", None)
    assert (p_ben.level_name, p_ben.parent_code, p_ben.ref) == ("", ann.code, ben.code)
    assert p_ben.share_path.endswith(f"?ref={ben.code}")


# -- products ---------------------------------------------------------------------------------

def test_products_show_markup_price_rate_and_lock(rt, shop):
    from models.catalog import Sku

    shop.card_sku(keys=1, price=10_000, code="OPEN")
    locked = shop.card_sku(keys=1, price=20_000, code="LOCKED")
    with db.connection_context():
        Sku.update(min_rank=3, commission_bp=2000, max_markup_bp=1000).where(Sku.id == locked.id).execute()
    ann = named("ann", rank=2)
    with db.connection_context():
        network.set_markup(ann, "OPEN", 500, default_cap_bp=3000)
        got = {p.sku: p for p in earnings.products(ann, default_cap_bp=3000)}
        assert CreatorPrice.select().count() == 1
    # then the open SKU: retail + markup, level rate 12% above the SKU's 10%, cap 30% of retail
    o = got["OPEN"]
    assert (o.markup_fen, o.selling_price_fen, o.commission_bp, o.max_markup_fen, o.locked) == (
        500, 10_500, 1200, 3000, False)
    # and the locked SKU: its own 20% rate, its own 10% cap, locked below three-star
    lk = got["LOCKED"]
    assert (lk.markup_fen, lk.selling_price_fen, lk.commission_bp, lk.max_markup_fen, lk.locked) == (
        0, 20_000, 2000, 2000, True)
    assert o.ref == lk.ref == ann.code
