"""The operators' order search: filters parsed from text, and keyset pages that walk exactly the
matching orders, newest first, whatever the page size and the filters."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.catalog import Kind, Sku
from models.db import db
from models.migrations import m0010_admin_order_indexes as m0010
from models.network import Creator
from models.order_search import (
    FilterError,
    OrderFilters,
    parse_cursor,
    parse_filters,
    search,
    utc_bounds,
    walk,
)
from models.orders import Order
from models.users import User
from tests.factories import creator, order_row

# ---- parsing ----------------------------------------------------------------------------------


def test_filters_are_read_from_query_arguments():
    """Given every filter as text, when parsed, then each has its typed value; blanks are "any"."""
    parsed = parse_filters({"status": "refunded", "buyer": " oAB12 ", "creator": "ABCD2345", "sku": "SKU-1",
                            "live": "7", "from": "2024-03-01", "to": "2024-03-31", "min": "12.5", "max": "100",
                            "no": "qx2024abc", "ignored": "x"})
    assert parsed == OrderFilters(status="refunded", buyer="oAB12", creator="ABCD2345", sku="SKU-1", live_id=7,
                                  date_from=dt.date(2024, 3, 1), date_to=dt.date(2024, 3, 31), min_fen=1250,
                                  max_fen=10_000, no="QX2024ABC")
    assert parse_filters({"status": "", "min": "  ", "to": ""}) == OrderFilters()
    assert parse_filters(parsed.as_args()) == parsed  # what links carry reads back the same


@pytest.mark.parametrize(("args", "field", "code"), [
    ({"status": "lost"}, "status", "invalid_status"),
    ({"creator": "a b"}, "creator", "invalid_creator"),
    ({"live": "0"}, "live", "invalid_id"),
    ({"live": "1e3"}, "live", "invalid_id"),
    ({"from": "2024-02-30"}, "from", "invalid_date"),
    ({"to": "20240301"}, "to", "invalid_date"),
    ({"from": "1970-01-01"}, "from", "invalid_date"),
    ({"from": "2024-03-02", "to": "2024-03-01"}, "to", "invalid_range"),
    ({"min": "-1"}, "min", "negative_amount"),
    ({"max": "1.234"}, "max", "invalid_amount"),
    ({"max": "1,5"}, "max", "invalid_amount"),
    ({"max": "99999999999"}, "max", "invalid_amount"),
    ({"min": "5", "max": "4.99"}, "max", "invalid_range"),
    ({"no": "QX-1"}, "no", "invalid_no"),
    ({"buyer": "x" * 65}, "buyer", "invalid_buyer"),
    ({"buyer": "o\x00x"}, "buyer", "invalid_buyer"),
    ({"sku": "A\tB"}, "sku", "invalid_sku"),
])
def test_an_unusable_filter_names_its_field(args, field, code):
    """When a malformed filter value is parsed, then FilterError names the field and the reason."""
    with pytest.raises(FilterError) as raised:
        parse_filters(args)
    assert (raised.value.field, raised.value.code, raised.value.status) == (field, code, 400)


def test_a_cursor_is_a_positive_id():
    assert parse_cursor(None) is None and parse_cursor(" ") is None and parse_cursor("42") == 42
    for bad in ("-1", "0", "x", str(2**63)):
        with pytest.raises(FilterError):
            parse_cursor(bad)


def test_dates_are_shanghai_days_in_utc():
    """A Shanghai calendar day starts at 16:00 UTC the day before; `to` is inclusive."""
    assert utc_bounds(dt.date(2024, 3, 2), dt.date(2024, 3, 2)) == (dt.datetime(2024, 3, 1, 16),
                                                                      dt.datetime(2024, 3, 2, 16))
    assert utc_bounds(None, None) == (None, None)


# ---- searching --------------------------------------------------------------------------------


def test_unknown_references_are_refused(conn, shop):
    """Given a shop, when the search names a creator, SKU, buyer or cursor order that does not
    exist, then FilterError names the field (not an empty page that looks like "no orders")."""
    shop.card_sku(keys=1, code="KNOWN")
    for filters, field in ((OrderFilters(creator="NOSUCH12"), "creator"), (OrderFilters(sku="NOPE"), "sku"),
                           (OrderFilters(buyer="nobody"), "buyer"), (OrderFilters(buyer="77"), "buyer")):
        with pytest.raises(FilterError) as raised:
            search(filters)
        assert raised.value.field == field
    with pytest.raises(FilterError) as raised:
        search(OrderFilters(date_from=dt.date(2024, 1, 1)), after=12345)
    assert raised.value.code == "unknown_cursor"


START = dt.datetime(2024, 3, 1, 16)  # 2024-03-02 00:00 in Shanghai


@pytest.fixture
def spread(conn, shop):  # noqa: ANN001, ANN201
    """40 orders over 6 Shanghai days in a seeded random mix of status, buyer, seller, SKU, live
    session and amount; their times are NOT in id order (a row inserted late, a clock step)."""
    rng = random.Random(12)
    skus = [shop.card_sku(keys=1, code="S1"), shop.card_sku(keys=1, code="S2"),
            shop.counter_sku(Kind.SERIAL, code="S3")]
    sellers = [None, creator("p1", code="SELLER01"), creator("p2", code="SELLER02")]
    for _ in range(40):
        order_row(rng.choice(skus), openid=rng.choice(["b1", "b2", "b3"]),
                  status=rng.choice(["pending", "paid", "delivered", "expired", "refunded"]),
                  amount=rng.choice([500, 990, 1000, 2500, 10_000]), seller=rng.choice(sellers),
                  live_id=rng.choice([None, None, 1, 2]),
                  created_at=START + dt.timedelta(hours=rng.randrange(0, 6 * 24), seconds=rng.randrange(2)))
    return list(Order.select().order_by(Order.id))


def expected(orders: list[Order], f: OrderFilters, sellers: dict[str, int]) -> list[int]:
    """The matching ids in the list's order, computed the slow and obvious way."""
    start, end = f.utc_bounds()
    kept = [o for o in orders
            if (f.status is None or o.status == f.status)
            and (f.buyer is None or o.user.openid == f.buyer)
            and (f.creator is None or o.seller_id == sellers[f.creator])
            and (f.sku is None or o.sku.code == f.sku)
            and (f.live_id is None or o.live_id == f.live_id)
            and (start is None or o.created_at >= start) and (end is None or o.created_at < end)
            and (f.min_fen is None or o.amount_fen >= f.min_fen) and (f.max_fen is None or o.amount_fen <= f.max_fen)]
    key = (lambda o: (o.created_at, o.id)) if f.dated else (lambda o: o.id)
    return [o.id for o in sorted(kept, key=key, reverse=True)]


days = st.one_of(st.none(), st.integers(min_value=-1, max_value=7).map(lambda d: dt.date(2024, 3, 2 + d)))
filters = st.builds(
    OrderFilters,
    status=st.sampled_from([None, "pending", "paid", "delivered", "expired", "refunded"]),
    buyer=st.sampled_from([None, "b1", "b2"]),
    creator=st.sampled_from([None, "SELLER01", "SELLER02"]),
    sku=st.sampled_from([None, "S1", "S3"]),
    live_id=st.sampled_from([None, 1, 2]),
    date_from=days, date_to=days,
    min_fen=st.sampled_from([None, 990, 1000]), max_fen=st.sampled_from([None, 2500, 10_000]),
)


def test_keyset_pages_walk_exactly_the_matching_orders(spread):
    """Given 40 varied orders, for any filters and page size, when the pages are followed from
    the first through their cursors, then together they list exactly the matching orders, each
    once, newest first, every page full but the last."""
    with_ids = list(Order.select(Order, User, Sku).join(User).switch(Order).join(Sku).order_by(Order.id))
    sellers = dict(Creator.select(Creator.code, Creator.id).tuples())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(f=filters, limit=st.integers(min_value=1, max_value=12))
    def walk_pages(f: OrderFilters, limit: int) -> None:
        seen: list[int] = []
        after = None
        for _ in range(50):
            page = search(f, after=after, limit=limit)
            seen += [r.id for r in page.rows]
            if page.next_after is None:
                break
            assert len(page.rows) == limit and page.next_after == page.rows[-1].id
            after = page.next_after
        assert seen == expected(with_ids, f, sellers)

    walk_pages()
    assert any(a.created_at > b.created_at for a, b in zip(spread, spread[1:], strict=False))  # not in id order


def test_walk_reads_every_matching_order_in_batches(spread):
    """Given 40 orders, when an export walks them in batches of 7, then it gets every order once,
    in batches of at most 7, in the list's order."""
    batches = list(walk(OrderFilters(), batch=7))
    assert {len(b) for b in batches[:-1]} == {7}
    assert [r.id for b in batches for r in b] == sorted((o.id for o in spread), reverse=True)


def test_rows_carry_what_the_list_shows(conn, shop):
    """Given an order through a creator, when found, then its row names the SKU, buyer and seller."""
    seller = creator("p9", code="ROWSELLER")
    order_id = order_row(shop.card_sku(keys=1, code="ROWSKU"), openid="row-buyer", seller=seller, amount=1234,
                         account="13800000000")
    (row,) = search(OrderFilters(no=Order.get_by_id(order_id).no)).rows
    assert (row.sku_code, row.buyer_openid, row.seller_code, row.seller_id, row.amount_fen,
            row.recipient_account) == ("ROWSKU", "row-buyer", "ROWSELLER", seller.id, 1234, "13800000000")


def test_the_migration_adds_the_list_indexes_once(conn):
    """Given a migrated database, when migration 0010 runs again, then nothing fails and each of
    the list's indexes exists once."""
    m0010.up(db)
    names = [i.name for i in db.get_indexes("order")]
    for wanted in ("order_admin_seller", "order_admin_sku", "order_admin_created", "order_admin_refunded"):
        assert names.count(wanted) == 1
