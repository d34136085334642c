"""The shelf (models/shelf.py, issue 14): categories, search with Chinese and Latin text, keyset
pages in a stable order, and the stock state a shopper sees."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import shelf
from models.catalog import Product, Sku
from models.db import db
from models.errors import Conflict, InvalidInput, NotFound
from tests.factories import category, shelf_product

RULE = {"default_threshold": 10, "exact_from": 50}


def titles(query: shelf.ShelfQuery) -> list[str]:
    with db.connection_context():
        return [p.product.title for p in shelf.page(query, **RULE).products]


def walk(limit: int, **kw: object) -> list[str]:
    """Every page from the first, following `next`."""
    seen, after = [], None
    while True:
        with db.connection_context():
            found = shelf.page(shelf.parse_query(limit=limit, after=after, **kw), **RULE)
        seen += [p.product.title for p in found.products]
        if found.next is None:
            return seen
        after = found.next


def test_pages_follow_category_order_then_product_and_never_repeat(rt):
    # given products in two categories (sorted 2 then 1) and some without a category
    late, early = category("数码", sort=2), category("会员", sort=1)
    for title, cat in (("A", late), ("B", None), ("C", early), ("D", late), ("E", early), ("F", None)):
        shelf_product(title, category_id=cat)
    # when the shelf is read two products at a time
    pages = walk(2)
    # then each product comes once, category "会员" first, then "数码", then the uncategorised
    assert pages == ["C", "E", "A", "D", "B", "F"]
    assert walk(50) == pages and walk(1) == pages


def test_a_product_without_active_skus_or_inactive_is_not_on_the_shelf(rt):
    shelf_product("上架")
    hidden = shelf_product("下架")
    no_sku = shelf_product("停售")
    with db.connection_context():
        Product.update(active=False).where(Product.id == hidden.product_id).execute()
        Sku.update(active=False).where(Sku.id == no_sku.id).execute()
    assert walk(10) == ["上架"]


def test_filtering_by_category(rt):
    games, vip = category("游戏"), category("会员")
    shelf_product("王者点券", category_id=games)
    shelf_product("视频会员", category_id=vip)
    assert titles(shelf.parse_query(category=games)) == ["王者点券"]
    # a category that does not exist, or is hidden, is not found
    hidden = category("隐藏", active=False)
    for missing in (hidden, 10**6):
        with db.connection_context(), pytest.raises(NotFound) as refused:
            shelf.page(shelf.parse_query(category=missing), **RULE)
        assert refused.value.code == "category_not_found"


def test_categories_are_listed_in_shelf_order_without_hidden_ones(rt):
    category("b", sort=5), category("a", sort=1), category("off", sort=0, active=False)
    with db.connection_context():
        assert [c.name for c in shelf.categories()] == ["a", "b"]


def test_search_finds_chinese_titles_sku_names_and_latin_in_any_case(rt):
    # given products with Chinese titles, a Latin one and a SKU whose name alone matches
    shelf_product("腾讯视频会员月卡")
    shelf_product("Netflix Premium")
    shelf_product("游戏礼包", sku_name="王者荣耀点券 60")
    shelf_product("爱奇艺年卡")
    # when searching, then the matching products come back
    assert titles(shelf.parse_query(q="视频会员")) == ["腾讯视频会员月卡"]
    assert titles(shelf.parse_query(q="netFLIX")) == ["Netflix Premium"]
    assert titles(shelf.parse_query(q="王者")) == ["游戏礼包"]
    assert titles(shelf.parse_query(q="ＮＥＴＦＬＩＸ")) == ["Netflix Premium"]  # full-width typed
    assert titles(shelf.parse_query(q="不存在的商品")) == []
    assert len(titles(shelf.parse_query(q="  "))) == 4  # a blank search is no search


def test_percent_and_underscore_are_plain_characters(rt):
    shelf_product("满100%返现")
    shelf_product("满100元返现")
    shelf_product("a_b 卡")
    shelf_product("axb 卡")
    assert titles(shelf.parse_query(q="100%")) == ["满100%返现"]
    assert titles(shelf.parse_query(q="a_b")) == ["a_b 卡"]
    assert titles(shelf.parse_query(q="%")) == ["满100%返现"]
    assert titles(shelf.parse_query(q="\\")) == []


def test_a_cursor_past_every_product_reads_an_empty_page(rt):
    shelf_product("唯一")
    assert titles(shelf.parse_query(after="2147483647." + "9" * 19)) == []
    assert titles(shelf.parse_query(after="-9999999999.0")) == ["唯一"]


@pytest.mark.parametrize(("kw", "code"), [
    ({"limit": 0}, "invalid_limit"), ({"limit": 51}, "invalid_limit"), ({"limit": 10**9}, "invalid_limit"),
    ({"limit": True}, "invalid_limit"),
    ({"q": "长" * 41}, "invalid_query"), ({"q": "abc\x00"}, "invalid_query"), ({"q": "a\nb"}, "invalid_query"),
    ({"after": "abc"}, "invalid_cursor"), ({"after": "1.2.3"}, "invalid_cursor"),
    ({"category": 0}, "invalid_category"),
])
def test_absurd_requests_are_refused(kw, code):  # noqa: ANN001
    with pytest.raises(InvalidInput) as refused:
        shelf.parse_query(**kw)
    assert refused.value.code == code


def test_stock_state_per_sku_hides_small_counts(rt):
    # given SKUs with 0, 3, 12 and 60 keys, and one with its own threshold of 70
    sold_out = shelf_product("售罄", keys=0)
    few = shelf_product("少量", keys=3)
    some = shelf_product("有货", keys=12)
    many = shelf_product("充足", keys=60)
    own = shelf_product("自定阈值", keys=60)
    with db.connection_context():
        Sku.update(low_stock_threshold=70).where(Sku.id == own.id).execute()
        skus = list(Sku.select().where(Sku.id.in_([s.id for s in (sold_out, few, some, many, own)])))
        got = {s.sku.id: (s.state, s.available) for s in shelf.stocks(skus, **RULE).values()}
    # then the state says sold out / low / in stock and only 50+ is exact
    assert got == {sold_out.id: ("sold_out", 0), few.id: ("low", None), some.id: ("in_stock", None),
                   many.id: ("in_stock", 60), own.id: ("low", 60)}
    # and a product's detail says the same
    with db.connection_context():
        detail = shelf.product(many.product_id, **RULE)
        assert [(s.state, s.available) for s in detail.skus] == [("in_stock", 60)]
        with pytest.raises(NotFound):
            shelf.product(10**6, **RULE)


@given(available=st.integers(-5, 500), threshold=st.integers(0, 100), exact_from=st.integers(0, 200))
def test_the_exact_count_is_never_shown_below_the_limit(available, threshold, exact_from):  # noqa: ANN001
    state, shown = shelf.stock_state(available, threshold, exact_from)
    assert (state == "sold_out") is (available <= 0)
    assert shown is None or shown == max(available, 0)
    if 0 < available < exact_from:
        assert shown is None
    if state == "in_stock":
        assert available >= threshold



# -- operators' categories ----------------------------------------------------------------------

def test_categories_are_created_renamed_hidden_and_products_assigned(rt):
    with db.connection_context():
        # given a new category, when it is renamed, reordered and hidden
        made = shelf.create_category("  视频 会员 ", 3)
        assert (made.name, made.sort, made.active) == ("视频 会员", 3, True)
        diff = shelf.update_category(made.id, name="视频", sort=1, active=False)
        # then only what changed is reported
        assert diff == {"name": ("视频 会员", "视频"), "sort": (3, 1), "active": (True, False)}
        assert shelf.update_category(made.id, name="视频", sort=1, active=False) == {}
    # and a product put into it (then out again) follows
    sku = shelf_product("月卡")
    with db.connection_context():
        assert shelf.set_product_category(sku.product_id, made.id) == (None, made.id)
        assert [(c.name, n) for c, n in shelf.all_categories()] == [("视频", 1)]
        assert shelf.set_product_category(sku.product_id, None) == (made.id, None)


@pytest.mark.parametrize(("call", "code"), [
    (lambda: shelf.create_category("", 0), "invalid_category_name"),
    (lambda: shelf.create_category("长" * 41, 0), "invalid_category_name"),
    (lambda: shelf.create_category("好\x07", 0), "invalid_category_name"),
    (lambda: shelf.create_category("ok", 10**7), "invalid_sort"),
    (lambda: shelf.create_category("ok", "1"), "invalid_sort"),
    (lambda: shelf.create_category("已有", 0), "category_name_taken"),
    (lambda: shelf.update_category(10**6, name="x", sort=0, active=True), "category_not_found"),
    (lambda: shelf.set_product_category(10**6, None), "product_not_found"),
])
def test_bad_category_changes_are_refused(rt, call, code):  # noqa: ANN001
    with db.connection_context():
        shelf.create_category("已有", 0)
        before = [(c.id, c.name, c.sort) for c, _n in shelf.all_categories()]
        with pytest.raises((InvalidInput, NotFound, Conflict)) as refused:
            call()
        assert refused.value.code == code
        assert [(c.id, c.name, c.sort) for c, _n in shelf.all_categories()] == before
