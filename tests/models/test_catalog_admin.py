"""The catalog services the admin calls: exact yuan -> fen, validation of every SKU value, events
for every change (price changes with before and after), bundle rules, and the upload checks of
the vault (size, encoding, formulas) and its rotation progress."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import catalog_edits as edits
from models import vault
from models.catalog import BundleItem, Kind, Sku
from models.catalog_edits import CatalogInputError, DuplicateCode
from models.events import Event
from models.money import yuan
from models.vault import UploadRefused


@pytest.mark.parametrize("text, fen", [("19.90", 1990), ("19.9", 1990), ("0.01", 1), ("7", 700), ("¥12.30", 1230),
                                       ("12元", 1200), ("１９．９０", 1990), (" 3.5 ", 350), ("1,000.00", 100_000),
                                       ("-2.50", -250), ("0", 0), ("999999999.99", 99_999_999_999)])
def test_yuan_to_fen_is_exact(text, fen):
    # given an amount as an operator types it; when it is read; then it is exactly these fen
    assert edits.yuan_to_fen(text) == fen


@pytest.mark.parametrize("text, code", [("abc", "price_format"), ("", "price_format"), ("1.234", "price_decimals"),
                                        ("1e3", "price_format"), ("NaN", "price_format"), ("inf", "price_format"),
                                        ("0x10", "price_format"), ("1.2.3", "price_format"),
                                        ("12345678901", "price_too_large")])
def test_yuan_to_fen_refuses_what_is_not_an_amount(text, code):
    # given text that is no amount in yuan; when it is read; then it is refused with a stable code
    with pytest.raises(CatalogInputError) as err:
        edits.yuan_to_fen(text, "retail_price_fen")
    assert err.value.code == code and err.value.field == "retail_price_fen"


@h_settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=edits.MAX_PRICE_FEN))
def test_what_yuan_writes_yuan_to_fen_reads_back(fen: int):
    # given any price in fen; when it is written as yuan and read back; then it is the same fen
    assert edits.yuan_to_fen(yuan(fen)) == fen
    assert Decimal(yuan(fen)) * 100 == fen


@pytest.mark.parametrize("text, bp", [("10", 1000), ("12.5", 1250), ("30%", 3000), ("0.01", 1), ("150", 15000)])
def test_percent_to_bp_is_exact(text, bp):
    assert edits.percent_to_bp(text) == bp


def _product(conn):  # noqa: ANN001, ANN202
    return edits.add_product("会员", actor="operator:1")


def _fields(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"code": "M-1", "name": "月卡", "kind": Kind.CARD_KEY, "supply_price_fen": 1000,
                               "retail_price_fen": 1990, "commission_bp": 1500}
    base.update(overrides)
    return base


@pytest.mark.parametrize("overrides, code", [
    ({"retail_price_fen": 0}, "price_zero"), ({"supply_price_fen": -1}, "price_negative"),
    ({"retail_price_fen": edits.MAX_PRICE_FEN + 1}, "price_too_large"),
    ({"supply_price_fen": 2000}, "supply_above_retail"), ({"commission_bp": 999}, "invalid_rate"),
    ({"commission_bp": 3001}, "invalid_rate"), ({"max_markup_bp": 10_001}, "invalid_markup_cap"),
    ({"max_markup_bp": -1}, "invalid_markup_cap"), ({"max_per_order": 0}, "out_of_range"),
    ({"max_per_order": 1001}, "out_of_range"), ({"low_stock_threshold": -1}, "out_of_range"),
    ({"min_rank": 100}, "out_of_range"), ({"code": "a b"}, "invalid_code"), ({"code": ""}, "invalid_code"),
    ({"name": " "}, "required"), ({"name": "x" * 121}, "too_long"), ({"kind": "gift"}, "invalid_kind"),
    ({"kind": Kind.BUNDLE}, "bundle_empty"), ({"stock": 5}, "no_counter_stock"),
])
def test_add_sku_refuses_bad_values_and_writes_nothing(conn, overrides, code):
    # given a product; when a SKU with one bad value is added; then it is refused with its code
    product = _product(conn)
    with pytest.raises(CatalogInputError) as err:
        edits.add_sku(product, actor="operator:1", **_fields(**overrides))
    assert err.value.code == code
    # and nothing was written
    assert Sku.select().count() == 0
    assert Event.select().where(Event.topic == "sku.created").count() == 0


def test_add_sku_refuses_a_duplicate_code(conn):
    product = _product(conn)
    edits.add_sku(product, actor="operator:1", **_fields())
    with pytest.raises(DuplicateCode):
        edits.add_sku(product, actor="operator:1", **_fields(name="另一个"))
    assert Sku.select().count() == 1


def test_update_sku_writes_one_price_event_with_both_prices_before_and_after(conn):
    # given a SKU at 19.90 / 10.00
    sku = edits.add_sku(_product(conn), actor="operator:1", **_fields())
    # when only its retail price and its limit change
    diff = edits.update_sku(sku, {"retail_price_fen": 2490, "max_per_order": 3, "name": "月卡"}, actor="operator:7")
    # then the diff names what changed, the row has it, and the events say it
    assert diff == {"retail_price_fen": (1990, 2490), "max_per_order": (None, 3)}
    stored = Sku.get_by_id(sku.id)
    assert (stored.retail_price_fen, stored.max_per_order) == (2490, 3)
    price = Event.select().where(Event.topic == "sku.price_changed").get()
    assert price.payload == {"code": "M-1", "before": {"supply_price_fen": 1000, "retail_price_fen": 1990},
                             "after": {"supply_price_fen": 1000, "retail_price_fen": 2490}}
    assert price.actor == "operator:7" and price.subject == f"sku:{sku.id}"
    other = Event.select().where(Event.topic == "sku.updated").get()
    assert other.payload["before"] == {"max_per_order": None} and other.payload["after"] == {"max_per_order": 3}
    # and an update that changes nothing writes nothing
    assert edits.update_sku(sku, {"retail_price_fen": 2490}, actor="operator:7") == {}
    assert Event.select().where(Event.topic.startswith("sku.")).count() == 3  # created, price, updated


@pytest.mark.parametrize("changes, code", [({"retail_price_fen": 999}, "supply_above_retail"),
                                           ({"supply_price_fen": -5}, "price_negative"),
                                           ({"max_markup_bp": 15_000}, "invalid_markup_cap")])
def test_a_refused_update_changes_nothing(conn, changes, code):
    sku = edits.add_sku(_product(conn), actor="operator:1", **_fields())
    with pytest.raises(CatalogInputError) as err:
        edits.update_sku(sku, changes, actor="operator:1")
    assert err.value.code == code
    stored = Sku.get_by_id(sku.id)
    assert (stored.retail_price_fen, stored.supply_price_fen, stored.max_markup_bp) == (1990, 1000, None)
    assert Event.select().where(Event.topic == "sku.price_changed").count() == 0


def test_code_and_kind_cannot_be_edited(conn):
    sku = edits.add_sku(_product(conn), actor="operator:1", **_fields())
    with pytest.raises(ValueError, match="not editable"):
        edits.update_sku(sku, {"code": "OTHER"}, actor="operator:1")


def test_bundle_rules(conn, shop):
    # given a card SKU, a serial SKU, a top-up SKU and a bundle of the card
    card = shop.card_sku(keys=2, code="C1")
    serial = shop.counter_sku(Kind.SERIAL, code="S1")
    topup = shop.counter_sku(Kind.TOPUP, code="T1")
    product = _product(conn)
    gift = edits.add_sku(product, actor="operator:1", **_fields(code="G", kind=Kind.BUNDLE, bundle=[(card, 2)]))
    # then a serial can be added and its quantity set
    assert edits.set_bundle_part(gift, serial, 1, actor="operator:1") == [("C1", 2), ("S1", 1)]
    assert edits.set_bundle_part(gift, serial, 4, actor="operator:1") == [("C1", 2), ("S1", 4)]
    # but not a top-up, another bundle, the bundle itself, or a silly quantity
    other = edits.add_sku(product, actor="operator:1", **_fields(code="G2", kind=Kind.BUNDLE, bundle=[(card, 1)]))
    for component, qty, code in ((topup, 1, "bundle_component_kind"), (other, 1, "bundle_component_kind"),
                                 (gift, 1, "bundle_self"), (serial, 0, "out_of_range"), (serial, 101, "out_of_range")):
        with pytest.raises(CatalogInputError) as err:
            edits.set_bundle_part(gift, component, qty, actor="operator:1")
        assert err.value.code == code
    # and a repeated component or none at all cannot make a bundle
    for parts, code in (([(card, 1), (card, 2)], "bundle_repeated"), ([], "bundle_empty")):
        with pytest.raises(CatalogInputError) as err:
            edits.add_sku(product, actor="operator:1", **_fields(code="G3", kind=Kind.BUNDLE, bundle=parts))
        assert err.value.code == code
    # removing leaves at least one
    assert edits.remove_bundle_part(gift, card, actor="operator:1") == [("S1", 4)]
    with pytest.raises(CatalogInputError) as err:
        edits.remove_bundle_part(gift, serial, actor="operator:1")
    assert err.value.code == "bundle_empty"
    assert BundleItem.select().where(BundleItem.bundle == gift.id).count() == 1
    assert Event.select().where(Event.topic == "sku.bundle_changed").count() == 3
    assert [b.code for b in edits.bundles_containing(card)] == ["G2"]


def test_restock_adds_counter_stock_only(conn, shop):
    serial = shop.counter_sku(Kind.SERIAL, stock=2)
    assert edits.restock(serial, 5, actor="operator:1") == 7
    card = shop.card_sku(keys=1)
    with pytest.raises(CatalogInputError):
        edits.restock(card, 5, actor="operator:1")
    with pytest.raises(CatalogInputError):
        edits.restock(serial, 0, actor="operator:1")


def test_update_product_validates_and_records(conn):
    product = edits.add_product("会员", "说明", actor="operator:1")
    assert edits.update_product(product, {"title": "会员卡", "active": False}, actor="operator:2") == {
        "title": ("会员", "会员卡"), "active": (True, False)}
    with pytest.raises(CatalogInputError):
        edits.update_product(product, {"title": ""}, actor="operator:2")
    assert Event.select().where(Event.topic == "product.updated").count() == 1


# ---- the vault's upload checks -----------------------------------------------------------


def test_read_upload_gives_the_cli_rows_for_utf8_with_or_without_bom():
    body = "卡密\nKEY-1\n\nKEY-2,comment\n"
    assert vault.read_upload(body.encode(), 1000) == vault.parse_csv(body) == [(2, "KEY-1"), (4, "KEY-2")]
    assert vault.read_upload(b"\xef\xbb\xbf" + body.encode(), 1000) == [(2, "KEY-1"), (4, "KEY-2")]


@pytest.mark.parametrize("data, code", [("卡密\nKEY-1\n".encode("gbk"), "not_utf8"),
                                        ("KEY-1\n".encode("utf-16"), "not_utf8"),
                                        (b"A" * 101, "too_large"), (b"\n\n", "empty"), (b"key\n", "empty"),
                                        (b"OK-1\n=1+1\n", "formula_key"), (b'OK-1\n"\tX"\n', "formula_key")])
def test_read_upload_refuses_whole_files(data, code):
    with pytest.raises(UploadRefused) as err:
        vault.read_upload(data, 100)
    assert err.value.code == code
    if code == "formula_key":
        assert err.value.lines == [2]
    assert "KEY" not in err.value.message and "OK-1" not in err.value.message


def test_read_upload_refuses_more_keys_than_its_limit():
    assert len(vault.read_upload(b"A1\nA2\nA3\n", 100, max_keys=3)) == 3
    with pytest.raises(UploadRefused) as err:
        vault.read_upload(b"A1\nA2\nA3\nA4\n", 100, max_keys=3)
    assert (err.value.code, err.value.limit) == ("too_many_keys", 3)


def test_read_upload_refuses_what_the_csv_reader_cannot_read():
    # given a field over the csv module's field size limit; then the file is refused, not a 500
    with pytest.raises(UploadRefused) as err:
        vault.read_upload(b'"' + b"A" * 200_000 + b'"\n', 1_000_000)
    assert err.value.code == "not_csv"


def test_rotation_counts_per_key_id(conn, shop, settings):
    from qianxing.settings import parse_voucher_keys

    shop.card_sku(keys=3)
    assert vault.sealed_by_key_id() == {"dev1": 3} and vault.rotation_pending() == 0
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    try:
        import os

        vault.configure({"new": os.urandom(32), **old}, settings.VOUCHER_HASH_KEY or "")
        assert vault.rotation_pending() == 3
        seen: list[int] = []
        assert vault.rotate_key(batch_size=2, progress=seen.append) == 3
        assert seen == [2, 3, 3] and vault.sealed_by_key_id() == {"new": 3} and vault.rotation_pending() == 0
    finally:
        vault.configure(old, settings.VOUCHER_HASH_KEY or "")
