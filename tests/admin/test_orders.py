"""The admin's order list and order page over real HTTP: every filter finds its orders and only
those, keyset pages walk the whole list once, bad filters answer 400 with a reason, and the order
page shows keys masked for everyone and buyers masked for roles without personal.unmasked."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from models.catalog import Kind
from models.db import db
from models.live import LiveSession
from models.orders import Order
from models.users import User
from tests.factories import buyer, creator, order_row, order_rows, paid

ROW = re.compile(rb'<tr data-order="(\d+)"')


def listed(answer) -> list[int]:  # noqa: ANN001
    assert answer.status_code == 200, answer.data[:2000]
    return [int(i) for i in ROW.findall(answer.data)]


def next_link(answer) -> str | None:  # noqa: ANN001
    found = re.search(rb'<a href="([^"]+)" id="next-page"', answer.data)
    return found.group(1).decode().replace("&amp;", "&") if found else None


@pytest.fixture
def catalog(shop):  # noqa: ANN001, ANN201
    """Two card SKUs and a serial one."""
    return {"a": shop.card_sku(keys=1, code="SKU-A"), "b": shop.card_sku(keys=1, code="SKU-B"),
            "s": shop.counter_sku(Kind.SERIAL, code="SERIAL-S")}


def shanghai_noon(day: str) -> dt.datetime:
    """12:00 Asia/Shanghai of a day, as naive UTC."""
    return dt.datetime.fromisoformat(day) + dt.timedelta(hours=4)


def test_each_filter_finds_its_orders_and_only_those(admin, catalog):
    """Given orders that differ in one attribute each, when the list is filtered by that
    attribute, then exactly the orders having it are listed, newest first."""
    seller, other = creator("seller-x", code="SELLERX1"), creator("seller-y", code="SELLERY1")
    with db.connection_context():
        live = LiveSession.create(creator=seller.id, title="晚场")
    base = shanghai_noon("2024-03-10")
    plain = order_row(catalog["a"], openid="alice", amount=1_000, created_at=base)
    by_seller = order_row(catalog["a"], openid="bob", seller=seller, amount=2_000, created_at=base)
    by_other = order_row(catalog["a"], openid="bob", seller=other, amount=2_500, created_at=base)
    in_live = order_row(catalog["a"], openid="carol", seller=seller, live_id=live.id, created_at=base)
    sku_b = order_row(catalog["b"], openid="alice", amount=5_000, created_at=base)
    refunded = order_row(catalog["s"], openid="carol", status="refunded", created_at=base)
    pending = order_row(catalog["a"], openid="dave", status="pending", amount=990, created_at=base)
    day_before = order_row(catalog["a"], openid="dave", created_at=shanghai_noon("2024-03-09"))
    every = [plain, by_seller, by_other, in_live, sku_b, refunded, pending, day_before]
    with db.connection_context():
        alice = User.get(User.openid == "alice").id
        no = Order.get_by_id(sku_b).no
    a = admin("finance")

    def ids(query: str) -> set[int]:
        return set(listed(a.get(f"/admin/orders/?{query}")))

    assert listed(a.get("/admin/orders/")) == sorted(every, reverse=True)
    assert ids("status=refunded") == {refunded}
    assert ids("status=pending") == {pending}
    assert ids("status=paid") == set(every) - {refunded, pending}
    assert ids("buyer=alice") == {plain, sku_b}
    assert ids(f"buyer={alice}") == {plain, sku_b}
    assert ids("creator=SELLERX1") == {by_seller, in_live}
    assert ids("creator=SELLERY1") == {by_other}
    assert ids("sku=SKU-B") == {sku_b}
    assert ids("sku=SERIAL-S") == {refunded}
    assert ids(f"live={live.id}") == {in_live}
    assert ids("from=2024-03-10&to=2024-03-10") == set(every) - {day_before}
    assert ids("to=2024-03-09") == {day_before}
    assert ids("min=20&max=25") == {by_seller, by_other}
    assert ids("min=25.00") == {by_other, sku_b}
    assert ids("max=9.9") == {pending}
    assert ids(f"no={no.lower()}") == {sku_b}
    assert ids("creator=SELLERX1&min=15") == {by_seller}
    assert ids("buyer=bob&from=2024-03-10") == {by_seller, by_other}


def test_a_date_is_a_shanghai_calendar_day(admin, catalog):
    """Given one order at 23:59:59 and one at 00:00:00 Shanghai time (15:59:59 and 16:00:00 UTC),
    when the list is filtered to the later day, then only the later order is listed."""
    late = order_row(catalog["a"], created_at=dt.datetime(2024, 3, 1, 15, 59, 59))
    early = order_row(catalog["a"], created_at=dt.datetime(2024, 3, 1, 16, 0, 0))
    a = admin("readonly")
    assert listed(a.get("/admin/orders/?from=2024-03-02&to=2024-03-02")) == [early]
    assert listed(a.get("/admin/orders/?from=2024-03-01&to=2024-03-01")) == [late]


@pytest.mark.parametrize("query", ["", "status=paid", "from=2024-01-01&to=2030-01-01", "sku=SKU-A"])
def test_next_links_walk_every_order_once_newest_first(admin, catalog, query):
    """Given 120 orders, when the list is followed through its "next" links, then every
    order is listed exactly once, newest first, 50 to a page, and the last page has no link."""
    made = order_rows(catalog["a"], 120)
    a = admin("support")
    url: str | None = f"/admin/orders/?{query}"
    seen: list[int] = []
    pages = []
    while url:
        answer = a.get(url)
        pages.append(len(listed(answer)))
        seen += listed(answer)
        url = next_link(answer)
    assert seen == sorted(made, reverse=True)
    assert pages == [50, 50, 20]


def test_a_page_after_an_order_lists_the_older_ones(admin, catalog):
    """Given 10 orders, when the list is asked for the orders after the 4th newest, then the
    6 older ones are listed and a link back to the first page is offered."""
    made = order_rows(catalog["a"], 10)
    answer = admin("ops").get(f"/admin/orders/?after={made[6]}")
    assert listed(answer) == sorted(made[:6], reverse=True)
    assert b'id="first-page"' in answer.data and next_link(answer) is None


UNUSABLE = [
    ("from=2024-13-01", "开始日期格式应为 YYYY-MM-DD"),
    ("to=yesterday", "结束日期格式应为 YYYY-MM-DD"),
    ("from=2024-03-02&to=2024-03-01", "结束日期早于开始日期"),
    ("min=-5", "最低金额不能为负数"),
    ("max=1.234", "最高金额应为元，最多两位小数"),
    ("min=9&max=3", "最高金额低于最低金额"),
    ("creator=NOSUCH99", "没有推广码为 NOSUCH99 的推广员"),
    ("creator=a%20b", "推广码格式不正确"),
    ("sku=NO-SUCH-SKU", "没有这个 SKU：NO-SUCH-SKU"),
    ("buyer=nobody-here", "没有这个买家：nobody-here"),
    ("buyer=424242", "没有这个买家：424242"),
    ("status=lost", "状态无效"),
    ("live=-1", "直播场次应为正整数"),
    ("no=QX-1", "订单号只包含字母和数字"),
    ("after=abc", "翻页位置应为正整数"),
    ("from=2024-03-01&after=999999", "翻页位置无效"),
]


def test_a_filter_that_cannot_be_used_answers_400_with_the_reason(admin, catalog):
    """Given orders, when the list is asked with an unusable filter value (a bad date, a negative
    amount, an unknown creator code, ...), then it answers 400 with the reason on the page and
    the filter form, never an error page or a 500."""
    order_row(catalog["a"])
    a = admin("support")
    for query, message in UNUSABLE:
        answer = a.get(f"/admin/orders/?{query}")
        page = answer.data.decode()
        assert answer.status_code == 400, query
        assert message in page and 'id="order-filters"' in page and 'id="no-orders"' in page, query


def test_the_order_page_masks_keys_for_everyone_and_buyers_for_support(admin, shop, run_jobs):
    """Given a delivered card-key order, when support and finance open it, then neither page
    holds the key's plaintext (only its masked form), support sees the buyer's openid masked
    and finance in full."""
    sku = shop.card_sku(keys=1, code="MASKME")
    order = paid(sku, "oPENID-alice-0123456789")
    run_jobs()
    plaintext = "MASKME-KEY-000001-SECRET"
    support = admin("support").get(f"/admin/orders/{order.id}")
    finance = admin("finance").get(f"/admin/orders/{order.id}")
    for answer in (support, finance):
        assert answer.status_code == 200
        page = answer.data.decode()
        assert plaintext not in page
        assert "*" * 20 + "CRET" in page  # the vault's mask: its stored hint of the last characters
        assert 'data-topic="order.delivered"' in page and 'data-topic="order.paid"' in page
    assert "oPENID-alice-0123456789" not in support.data.decode()
    assert "oPE…89" in support.data.decode()
    assert "oPENID-alice-0123456789" in finance.data.decode()


def test_the_order_page_offers_each_role_its_own_actions(admin, shop):
    """Given a paid order, when each role opens it, then the page offers exactly the actions the
    role may take on an order in that state."""
    order = paid(shop.card_sku(keys=1), dispatch=False)

    def offered(role: str) -> set[str]:
        answer = admin(role).get(f"/admin/orders/{order.id}")
        assert answer.status_code == 200
        return set(re.findall(r'id="action-(\w+)"', answer.data.decode()))

    assert offered("owner") == {"redeliver", "refund", "hold", "fraud"}
    assert offered("finance") == {"refund", "hold", "fraud"}
    assert offered("support") == {"redeliver", "hold"}
    assert offered("readonly") == set() and offered("ops") == set()


def test_an_unknown_order_is_a_404_page(admin):
    """When an order that does not exist is opened, then the admin answers its 404 page."""
    answer = admin("support").get("/admin/orders/987654")
    assert answer.status_code == 404 and b"qx-error" in answer.data


def test_the_list_needs_a_signed_in_operator(client, catalog):
    """Given an order, when the list is asked without signing in, then it redirects to the login."""
    order_row(catalog["a"])
    answer = client.get("/admin/orders/")
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]


def test_support_sees_buyers_masked_in_the_list(admin, catalog):
    """Given an order of a buyer, when support and finance list orders, then support sees the
    openid masked and finance in full."""
    buyer("oLIST-buyer-987654321")
    order_row(catalog["a"], openid="oLIST-buyer-987654321")
    assert b"oLIST-buyer-987654321" not in admin("support").get("/admin/orders/").data
    assert b"oLIST-buyer-987654321" in admin("finance").get("/admin/orders/").data


def test_the_order_pages_speak_english_too(admin, catalog):
    """Given an operator who chose English, when the list is shown and a filter is refused, then
    the page and the reason are in English."""
    order_row(catalog["a"])
    a = admin("support")
    a.post("/admin/lang", {"lang": "en", "next": "/admin/orders/"}, action=False)
    page = a.get("/admin/orders/").data.decode()
    assert "Awaiting payment" in page and "Next »" not in page and "Search" in page
    refused = a.get("/admin/orders/?from=2024-02-30")
    assert refused.status_code == 400 and "From date: a date is written YYYY-MM-DD" in refused.data.decode()


def test_absurd_values_are_a_4xx_never_a_500(admin, catalog):
    """When the list, an order or an action is asked with values no column can hold (ids past
    64 bits, NUL characters, ten-figure amounts), then the answer is 200, 400 or 404, never 500."""
    order_row(catalog["a"])
    a = admin("owner")
    for query, status in (("after=9223372036854775807", 200), ("live=9223372036854775807", 200),
                          ("after=9223372036854775808", 400), ("buyer=99999999999999999999", 400),
                          ("min=999999999.99", 200), ("max=1000000000", 400), ("sku=%00", 400),
                          ("buyer=o%00x", 400), ("no=" + "A" * 40, 400)):
        assert a.get(f"/admin/orders/?{query}").status_code == status, query
    assert a.get("/admin/orders/99999999999999999999999").status_code == 404
    assert a.post("/admin/orders/99999999999999999999999/hold", {"reason": "不存在"}).status_code == 404
    assert a.post("/admin/orders/1/no_such_action", {"reason": "不存在"}).status_code == 404
