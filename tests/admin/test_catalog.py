"""The catalog pages over real HTTP: products and SKUs created and edited in yuan (stored in fen
exactly), every price change an event and an audit row, bad input refused with a message and
nothing written, bundles composed, and the roles that may only look."""

from __future__ import annotations

import re

import pytest

from models.audit import AuditEntry
from models.catalog import BundleItem, Kind, Product, Sku
from models.db import db
from models.events import Event
from tests.factories import api_login, api_place

PRODUCTS, SKUS = "/admin/catalog/products", "/admin/catalog/skus"


def _sku(code: str) -> Sku | None:
    with db.connection_context():
        return Sku.get_or_none(Sku.code == code)


def _events(topic: str) -> list[Event]:
    with db.connection_context():
        return list(Event.select().where(Event.topic == topic).order_by(Event.id))


def _audit(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def _product(title: str = "月卡") -> Product:
    with db.connection_context():
        return Product.create(title=title)


def _form(of: Product, **overrides: str) -> dict[str, str]:
    form = {"product": str(of.id), "code": "MONTH-1", "kind": "card_key", "name": "月卡 30 天",
            "retail_price": "19.90", "supply_price": "12.35", "commission": "15", "max_markup": "20",
            "max_per_order": "5", "low_stock_threshold": "3", "min_rank": "1", "active": "1"}
    form.update(overrides)
    return form


def _text(html: bytes) -> str:
    return re.sub(r"\s+", " ", html.decode())


def test_ops_creates_a_product_and_a_sku_in_yuan_stored_in_exact_fen(admin):
    """Given an ops operator; when they create a product and then a SKU priced 19.90 / 12.35
    yuan; then the SKU stores 1990 / 1235 fen, 15% as 1500 bp, its limits as typed, and the
    creation is an event and an audit row."""
    ops = admin("ops")
    # when the product is created through its form
    made = ops.post(f"{PRODUCTS}/new/", {"title": "视频会员", "description": "月卡与季卡", "active": "1"},
                    page=f"{PRODUCTS}/new/")
    assert made.status_code == 302, made.data[:400]
    with db.connection_context():
        product = Product.get(Product.title == "视频会员")
    # and a SKU under it, prices in yuan
    answer = ops.post(f"{SKUS}/new/", _form(product), page=f"{SKUS}/new/")
    assert answer.status_code == 302, _text(answer.data)[-1500:]
    # then the prices are exact fen and every field is as typed
    sku = _sku("MONTH-1")
    assert (sku.retail_price_fen, sku.supply_price_fen) == (1990, 1235)
    assert (sku.commission_bp, sku.max_markup_bp) == (1500, 2000)
    assert (sku.max_per_order, sku.low_stock_threshold, sku.min_rank) == (5, 3, 1)
    assert (sku.active, sku.kind) == (True, "card_key")
    assert sku.product_id == product.id
    # and the details page shows them back in yuan
    page = _text(ops.get(f"{SKUS}/details/?id={sku.id}").data)
    assert 'id="retail">19.90<' in page and 'id="supply">12.35<' in page
    # and both creations are audited and are events
    assert [a.object for a in _audit("sku.create")] == ["sku-code:MONTH-1"]
    assert _audit("sku.create")[0].after["retail_price_fen"] == 1990
    assert len(_audit("product.create")) == 1
    assert [e.payload["retail_price_fen"] for e in _events("sku.created")] == [1990]


@pytest.mark.parametrize("retail, supply, fen", [
    ("0.01", "0", (1, 0)), ("1000000", "999999.99", (100_000_000, 99_999_999)),
    ("¥8.5", "8.50", (850, 850)), ("０.７０", "0.1", (70, 10))])
def test_amounts_in_yuan_become_exact_fen(admin, retail, supply, fen):
    """Given amounts at the edges (one fen, the 1,000,000 yuan ceiling, a yuan mark, full-width
    digits); when a SKU is created with them; then the fen are exact."""
    ops = admin("ops")
    product = _product()
    answer = ops.post(f"{SKUS}/new/", _form(product, retail_price=retail, supply_price=supply), page=f"{SKUS}/new/")
    assert answer.status_code == 302, _text(answer.data)[-800:]
    sku = _sku("MONTH-1")
    assert (sku.retail_price_fen, sku.supply_price_fen) == fen


def test_a_price_edit_is_an_event_with_before_and_after_and_an_audit_row(admin, shop):
    """Given a card SKU at 19.90; when ops sets retail 25.00 and supply 11.00 with a reason; then
    the SKU has the new fen, one sku.price_changed event holds both prices before and after, and
    the audit row has the reason and the snapshots."""
    sku = shop.card_sku(keys=1, price=1990)
    ops = admin("ops")
    form = {"name": sku.name, "retail_price": "25", "supply_price": "11.00", "commission": "10",
            "max_markup": "", "max_per_order": "", "low_stock_threshold": "", "min_rank": "0", "active": "1",
            "reason": "供应商涨价"}
    answer = ops.post(f"{SKUS}/edit/?id={sku.id}", form, page=f"{SKUS}/edit/?id={sku.id}")
    assert answer.status_code == 302, _text(answer.data)[-800:]
    fresh = _sku(sku.code)
    assert (fresh.retail_price_fen, fresh.supply_price_fen) == (2500, 1100)
    changed = _events("sku.price_changed")
    assert len(changed) == 1 and changed[0].subject == f"sku:{sku.id}"
    assert changed[0].payload["before"] == {"supply_price_fen": 995, "retail_price_fen": 1990}
    assert changed[0].payload["after"] == {"supply_price_fen": 1100, "retail_price_fen": 2500}
    assert changed[0].actor == f"operator:{ops.op.id}"
    audit = _audit("sku.update")
    assert len(audit) == 1 and audit[0].reason == "供应商涨价" and audit[0].object == f"sku:{sku.id}"
    assert (audit[0].before["retail_price_fen"], audit[0].after["retail_price_fen"]) == (1990, 2500)
    # and the SKU's page lists the change in yuan
    page = _text(ops.get(f"{SKUS}/details/?id={sku.id}").data)
    assert "sku.price_changed" in page and "19.90" in page and "25.00" in page
    # and an edit that changes no price writes no price event
    form.update(name="新名字", retail_price="25.00", supply_price="11", reason="改名")
    assert ops.post(f"{SKUS}/edit/?id={sku.id}", form, page=f"{SKUS}/edit/?id={sku.id}").status_code == 302
    assert len(_events("sku.price_changed")) == 1
    assert _events("sku.updated")[-1].payload["after"] == {"name": "新名字"}


def test_a_double_submitted_edit_acts_once(admin, shop):
    """Given the edit form of a SKU; when it is posted twice with the same one-time token; then
    one change, one event and one audit row."""
    sku = shop.card_sku(keys=1, price=1990)
    ops = admin("ops")
    form = {"name": sku.name, "retail_price": "29.90", "supply_price": "9.95", "commission": "10",
            "min_rank": "0", "active": "1", "reason": "调价", "action_token": "double-submit-token-000001"}
    for _ in range(2):
        assert ops.post(f"{SKUS}/edit/?id={sku.id}", form, page=f"{SKUS}/edit/?id={sku.id}").status_code == 302
    assert len(_events("sku.price_changed")) == 1 and len(_audit("sku.update")) == 1


BAD = [
    ("negative price", {"retail_price": "-5"}, "零售价：不能为负数"),
    ("not a number", {"retail_price": "abc"}, "零售价：请输入以元为单位的金额"),
    ("three decimals", {"supply_price": "1.234"}, "供货价：最多两位小数"),
    ("zero retail", {"retail_price": "0", "supply_price": "0"}, "零售价：必须大于 0"),
    ("absurd price", {"retail_price": "1000000.01"}, "零售价：不能超过 1000000 元"),
    ("huge number", {"retail_price": "99999999999999999999"}, "零售价：不能超过 1000000 元"),
    ("float trick", {"retail_price": "1e3"}, "零售价：请输入以元为单位的金额"),
    ("markup cap 150%", {"max_markup": "150"}, "加价上限必须在 0% 到 100% 之间"),
    ("commission 35%", {"commission": "35"}, "佣金比例必须在 10% 到 30% 之间"),
    ("commission 5%", {"commission": "5"}, "佣金比例必须在 10% 到 30% 之间"),
    ("supply above retail", {"supply_price": "20.00"}, "供货价不能高于零售价"),
    ("limit zero", {"max_per_order": "0"}, "每单限购：请输入 1 到 1000 之间的整数"),
    ("limit words", {"max_per_order": "ten"}, "每单限购：请输入整数"),
    ("bad code", {"code": "月卡 1"}, "编码只能包含字母、数字和 - _ ."),
    ("no name", {"name": "  "}, "名称：不能为空"),
    ("unknown kind", {"kind": "gift"}, "请选择 SKU 类型"),
    ("no product", {"product": "999999"}, "请选择一个存在的商品"),
]


@pytest.mark.parametrize("case, change, message", BAD, ids=[b[0] for b in BAD])
def test_bad_sku_input_gives_a_message_and_writes_nothing(admin, case, change, message):
    """Given the new-SKU form; when one value is wrong; then the form comes back 400 with a
    message saying what is wrong, and no SKU, event or audit row is written."""
    ops = admin("ops")
    product = _product()
    answer = ops.post(f"{SKUS}/new/", _form(product, **change), page=f"{SKUS}/new/")
    assert answer.status_code == 400, case
    assert message in _text(answer.data), _text(answer.data)[-1200:]
    # the form keeps what was typed
    assert f'value="{change.get("retail_price", "19.90")}"'.encode() in answer.data or "retail_price" not in change
    with db.connection_context():
        assert Sku.select().count() == 0
    assert _events("sku.created") == [] and _audit("sku.create") == []


def test_a_duplicate_code_is_refused_with_a_message(admin, shop):
    """Given a SKU CARD-9; when another SKU is created with that code; then 409 with a message and
    the first SKU is unchanged."""
    existing = shop.card_sku(keys=0, code="CARD-9")
    ops = admin("ops")
    answer = ops.post(f"{SKUS}/new/", _form(_product(), code="CARD-9", retail_price="50"), page=f"{SKUS}/new/")
    assert answer.status_code == 409 and "这个编码已经存在" in _text(answer.data)
    with db.connection_context():
        assert Sku.select().count() == 1
    assert _sku("CARD-9").retail_price_fen == existing.retail_price_fen and _audit("sku.create") == []


@pytest.mark.parametrize("change, message", [
    ({"retail_price": "-1"}, "不能为负数"), ({"supply_price": "99"}, "供货价不能高于零售价"),
    ({"max_markup": "100.5"}, "加价上限"), ({"retail_price": "1.234"}, "最多两位小数"), ({"reason": ""}, "请填写原因")])
def test_a_bad_edit_changes_nothing(admin, shop, change, message):
    """Given a SKU at 19.90; when an edit carries a bad value (or no reason); then 400 with the
    message, and the SKU, its events and the audit log are as before."""
    sku = shop.card_sku(keys=1, price=1990)
    ops = admin("ops")
    form = {"name": sku.name, "retail_price": "25.00", "supply_price": "9.95", "commission": "10",
            "min_rank": "0", "active": "1", "reason": "调价", **change}
    answer = ops.post(f"{SKUS}/edit/?id={sku.id}", form, page=f"{SKUS}/edit/?id={sku.id}")
    assert answer.status_code == 400 and message in _text(answer.data)
    assert _sku(sku.code).retail_price_fen == 1990
    assert _events("sku.price_changed") == [] and _audit("sku.update") == []


def test_bundles_are_composed_from_card_and_serial_skus(admin, shop):
    """Given a card SKU, a serial SKU and a top-up SKU; when ops creates a bundle of the card x2,
    adds the serial, changes its quantity and removes the card; then the composition follows,
    each change is an event and an audit row; and a top-up, another bundle, the bundle itself
    and removing the last component are refused with a message, changing nothing."""
    card = shop.card_sku(keys=4, code="CARD-A")
    serial = shop.counter_sku(Kind.SERIAL, stock=5, code="SER-A")
    topup = shop.counter_sku(Kind.TOPUP, stock=5, code="TOP-A")
    other = shop.bundle([(card, 1)], code="OTHER-BUNDLE")
    ops = admin("ops")
    made = ops.post(f"{SKUS}/new/", _form(_product("礼包"), code="GIFT", kind="bundle", bundle="CARD-A 2",
                                          supply_price="10", retail_price="30"), page=f"{SKUS}/new/")
    assert made.status_code == 302, _text(made.data)[-800:]
    gift = _sku("GIFT")
    page = f"{SKUS}/details/?id={gift.id}"

    def parts() -> dict[str, int]:
        with db.connection_context():
            return {i.component.code: i.quantity for i in BundleItem.select().where(BundleItem.bundle == gift.id)}

    assert parts() == {"CARD-A": 2}
    # when a serial is added, then its quantity changed, then the card removed
    url = f"{SKUS}/{gift.id}/bundle"
    assert ops.post(url, {"component": "SER-A", "quantity": "1", "reason": "加序列号"}, page=page).status_code == 302
    assert ops.post(url, {"component": "SER-A", "quantity": "3", "reason": "改数量"}, page=page).status_code == 302
    assert ops.post(url, {"component": "CARD-A", "remove": "1", "reason": "去掉卡密"}, page=page).status_code == 302
    assert parts() == {"SER-A": 3}
    assert [e.payload["after"] for e in _events("sku.bundle_changed")] == [
        [["CARD-A", 2], ["SER-A", 1]], [["CARD-A", 2], ["SER-A", 3]], [["SER-A", 3]]]
    assert len(_audit("sku.bundle")) == 3
    # and what the domain forbids is refused, with a message
    for form, message in (({"component": "TOP-A", "quantity": "1"}, "礼包只能包含卡密和序列号类 SKU（TOP-A 不行）"),
                          ({"component": "OTHER-BUNDLE", "quantity": "1"}, "（OTHER-BUNDLE 不行）"),
                          ({"component": "GIFT", "quantity": "1"}, "礼包不能包含自己"),
                          ({"component": "SER-A", "quantity": "0"}, "数量：请输入 1 到 100 之间的整数"),
                          ({"component": "NOPE", "quantity": "1"}, "没有这个 SKU：NOPE"),
                          ({"component": "SER-A", "remove": "1"}, "礼包至少需要一个组件")):
        answer = ops.post(url, {**form, "reason": "试试"}, page=page)
        assert answer.status_code == 400 and message in _text(answer.data), (form, _text(answer.data)[-600:])
    assert parts() == {"SER-A": 3} and len(_events("sku.bundle_changed")) == 3
    # and a bundle cannot be created with a top-up in it either
    answer = ops.post(f"{SKUS}/new/", _form(_product(), code="GIFT-2", kind="bundle", bundle=f"{topup.code} 1"),
                      page=f"{SKUS}/new/")
    assert answer.status_code == 400 and _sku("GIFT-2") is None
    assert other.kind == "bundle" and serial.kind == "serial"


def test_deactivating_a_sku_stops_its_sale_at_once(admin, shop, client, fake_wechat):
    """Given a card SKU a shopper has just ordered (so the order path has cached it); when ops
    sets its per-order limit to 1 and then deactivates it; then the next orders see both at
    once: two are refused by the limit, then any is refused as unknown."""
    sku = shop.card_sku(keys=5)
    auth = api_login(client, fake_wechat, "shopper-x")
    api_place(client, auth, sku, 1)
    ops = admin("ops")
    details = f"{SKUS}/details/?id={sku.id}"
    form = {"name": sku.name, "retail_price": "19.90", "supply_price": "9.95", "commission": "10",
            "max_per_order": "1", "min_rank": "0", "active": "1", "reason": "限购"}
    assert ops.post(f"{SKUS}/edit/?id={sku.id}", form, page=f"{SKUS}/edit/?id={sku.id}").status_code == 302
    assert client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 2}, headers=auth).status_code == 400
    answer = ops.post(f"{SKUS}/{sku.id}/active", {"active": "", "reason": "下架"}, page=details)
    assert answer.status_code == 302
    assert _sku(sku.code).active is False
    refused = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1}, headers=auth)
    assert refused.status_code == 404 and refused.json["error"]["code"] == "unknown_sku"
    assert _audit("sku.deactivate")[0].reason == "下架"
    assert _events("sku.updated")[-1].payload == {"code": sku.code, "before": {"active": True},
                                                  "after": {"active": False}}
    # and nothing can delete it
    assert ops.post(f"{SKUS}/delete/", {"id": str(sku.id)}, page=f"{SKUS}/").status_code in (302, 403)
    assert _sku(sku.code) is not None


def test_deactivating_a_product_takes_its_skus_off_sale(admin, shop, client, fake_wechat):
    """Given a SKU on sale; when ops deactivates its product; then orders for the SKU are refused."""
    sku = shop.card_sku(keys=2)
    ops = admin("ops")
    page = f"{PRODUCTS}/edit/?id={sku.product_id}"
    answer = ops.post(page, {"title": "停售商品", "description": "", "reason": "停售"}, page=page)
    assert answer.status_code == 302
    with db.connection_context():
        assert Product.get_by_id(sku.product_id).active is False
    auth = api_login(client, fake_wechat, "shopper-y")
    assert client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1}, headers=auth).status_code == 404


@pytest.mark.parametrize("role", ["readonly", "support"])
def test_roles_without_catalog_edit_are_refused_and_nothing_changes(admin, shop, role):
    """Given a SKU; when a readonly or support operator opens or posts any catalog form; then
    403 each time and nothing changes; they can still see the lists."""
    sku = shop.card_sku(keys=1, price=1990)
    who = admin(role)
    assert who.get(f"{SKUS}/").status_code == 200 and who.get(f"{PRODUCTS}/").status_code == 200
    assert who.get(f"{SKUS}/details/?id={sku.id}").status_code == 200
    posts = [
        (f"{SKUS}/new/", _form(_product("别的"), code="NEW-1")),
        (f"{SKUS}/edit/?id={sku.id}", {"name": "x", "retail_price": "1", "supply_price": "0", "commission": "10",
                                       "reason": "试试"}),
        (f"{SKUS}/{sku.id}/active", {"active": "", "reason": "试试"}),
        (f"{SKUS}/{sku.id}/bundle", {"component": sku.code, "quantity": "1", "reason": "试试"}),
        (f"{PRODUCTS}/new/", {"title": "新商品"}),
        (f"{PRODUCTS}/edit/?id={sku.product_id}", {"title": "改名", "reason": "试试"}),
    ]
    for url, form in posts:
        assert who.post(url, form, page=f"{SKUS}/").status_code == 403, url
    assert who.get(f"{SKUS}/new/").status_code == 403 and who.get(f"{SKUS}/edit/?id={sku.id}").status_code == 403
    with db.connection_context():
        assert Sku.select().count() == 1 and Product.select().count() == 2
    assert _sku(sku.code).retail_price_fen == 1990 and _sku(sku.code).active
    assert _events("sku.updated") == [] and _events("sku.price_changed") == []
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action.startswith("sku.")).count() == 0


def test_the_sku_list_searches_and_filters(admin, shop):
    """Given two SKUs of different kinds; when the list is searched and filtered; then only the
    matching one is shown, with its price in yuan."""
    shop.card_sku(keys=0, code="FIND-ME", price=1234)
    shop.counter_sku(Kind.TOPUP, code="OTHER-ONE")
    who = admin("readonly")
    found = _text(who.get(f"{SKUS}/?search=FIND").data)
    assert "FIND-ME" in found and "OTHER-ONE" not in found and "12.34" in found
    assert "OTHER-ONE" in _text(who.get(f"{SKUS}/?flt0_0=topup").data)


def test_the_pages_speak_english_when_chosen(admin, shop):
    """Given an operator who chose English; when they open the SKU form and submit a bad price;
    then labels and the message are in English."""
    ops = admin("ops")
    ops.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    page = _text(ops.get(f"{SKUS}/new/").data)
    assert "Retail price (yuan)" in page
    answer = ops.post(f"{SKUS}/new/", _form(_product(), retail_price="1.234"), page=f"{SKUS}/new/")
    assert "Retail price: at most two decimals" in _text(answer.data)


def test_restocking_and_the_low_stock_threshold(admin, shop):
    """Given a serial SKU with 2 in stock; when ops sets its low-stock threshold to 5, then adds 10
    to its stock; then the threshold raises the low-stock flag (one stock.low event) at once, the
    restock clears it, and each step is an event and an audit row; a card-key SKU has no counter
    stock to add."""
    serial = shop.counter_sku(Kind.SERIAL, stock=2, price=1000)
    ops = admin("ops")
    page = f"{SKUS}/details/?id={serial.id}"
    form = {"name": serial.name, "retail_price": "10", "supply_price": "5", "commission": "10",
            "low_stock_threshold": "5", "min_rank": "0", "active": "1", "reason": "预警"}
    assert ops.post(f"{SKUS}/edit/?id={serial.id}", form, page=f"{SKUS}/edit/?id={serial.id}").status_code == 302
    assert _sku(serial.code).low_stock_flag is True and len(_events("stock.low")) == 1
    answer = ops.post(f"{SKUS}/{serial.id}/restock", {"quantity": "10", "reason": "补货"}, page=page)
    assert answer.status_code == 302
    fresh = _sku(serial.code)
    assert (fresh.stock, fresh.low_stock_flag) == (12, False)
    assert _events("sku.restocked")[0].payload == {"added": 10, "stock": 12}
    assert _audit("sku.restock")[0].after == {"added": 10, "stock": 12}
    assert 'id="available">12' in _text(ops.get(page).data)
    card = shop.card_sku(keys=1)
    refused = ops.post(f"{SKUS}/{card.id}/restock", {"quantity": "10", "reason": "补货"},
                       page=f"{SKUS}/details/?id={card.id}")
    assert refused.status_code == 400 and "只有序列号和直充类 SKU 有库存数" in _text(refused.data)
