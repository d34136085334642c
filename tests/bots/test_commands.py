"""The command set: parsing (slash, keyword, menu key, glued arguments, callbacks), amounts,
deep-link payloads, and the supply-pool commands (products, markup, promo, script, poster)
through the real core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots import commands
from bots.commands import Command, parse, parse_yuan
from bots.types import Incoming, Member
from models.catalog import Sku
from models.db import db
from models.errors import InvalidInput
from models.network import CreatorPrice
from tests.bots.conftest import join, say, text_of


def incoming(text: str = "", callback: str | None = None, payload: str | None = None) -> Incoming:
    return Incoming("console", "c", "private", Member("c"), text=text, callback=callback, start_payload=payload)


@pytest.mark.parametrize("text, expected", [
    ("/help", Command("help")),
    ("/HELP", Command("help")),
    ("/menu", Command("help")),
    ("/poster@qianxing_bot", Command("poster")),
    ("/withdraw 100", Command("withdraw", ("100",), "100")),
    ("/markup  SKU1   5 ", Command("markup", ("SKU1", "5"), "SKU1   5")),
    ("提现 100", Command("withdraw", ("100",), "100")),
    ("提现100", Command("withdraw", ("100",), "100")),
    ("提现￥100", Command("withdraw", ("¥100",), "¥100")),
    ("加价 SKU1 5", Command("markup", ("SKU1", "5"), "SKU1 5")),
    ("绑定邀请码 ABCD2345", Command("bind", ("ABCD2345",), "ABCD2345")),
    ("我的卡券", Command("vouchers")),
    ("卡券", Command("vouchers")),
    ("文案 直播 带货", Command("script", ("直播", "带货"), "直播 带货")),
    ("／ｐｏｓｔｅｒ", Command("poster")),
    ("/nope", Command("unknown", ("nope",))),
    ("海报呢", None),
    ("提现要多久", None),
    ("帮助我", None),
    ("hello", None),
    ("", None),
    ("   ", None),
])
def test_parse_text(text, expected):
    assert parse(incoming(text)) == expected


@pytest.mark.parametrize("data, expected", [
    ("CMD_POSTER", Command("poster", via_button=True)),
    ("CMD_WITHDRAW", Command("withdraw", via_button=True)),
    ("CMD_SELF_DESTRUCT", Command("stale_button")),
    ("wd:ok:abcdefgh12345678", Command("withdraw_confirm", ("abcdefgh12345678",), via_button=True)),
    ("wd:no:abcdefgh12345678", Command("withdraw_cancel", ("abcdefgh12345678",), via_button=True)),
    ("wd:maybe:abcdefgh12345678", Command("stale_button")),
    ("wd:ok:short", Command("stale_button")),
    ("promo:SKU1", Command("promo", ("SKU1",), "SKU1", via_button=True)),
    ("", Command("stale_button")),
])
def test_parse_callback(data, expected):
    # a pressed button wins over any text the platform sent with it (WeChat text menus send both)
    assert parse(incoming("帮助", callback=data)) == expected


def test_every_command_has_a_handler_and_a_menu_key():
    for name in commands.COMMANDS:
        assert name in commands.HANDLERS
        assert parse(incoming(callback=commands.menu_key(name))).name == name


@pytest.mark.parametrize("text, fen", [
    ("100", 10_000), ("100.5", 10_050), ("100.50", 10_050), ("¥99.99", 9_999), ("￥1", 100),
    ("12元", 1_200), ("0", 0), ("0.01", 1), ("００７", 700), ("999999999.99", 99_999_999_999),
])
def test_parse_yuan(text, fen):
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["", "-1", "1.001", "abc", "1e3", "1,000", "NaN", "inf", "1000000000", "💯",
                                  "1" * 400])
def test_parse_yuan_refuses(text):
    with pytest.raises(InvalidInput):
        parse_yuan(text)


@given(fen=st.integers(min_value=0, max_value=99_999_999_999))
def test_parse_yuan_round_trips_the_yuan_format(fen):
    assert parse_yuan(commands.yuan(fen)) == fen


@given(sku=st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
       code=st.from_regex(r"[A-Z2-9]{8}", fullmatch=True))
def test_product_payload_round_trips_and_fits_a_deep_link(sku, code):
    payload = commands.product_payload(sku, code)
    assert commands.parse_payload(payload) == ("product", code, sku)
    assert len(payload) <= 64 and commands.telegram_link(type("S", (), {"TELEGRAM_BOT_USERNAME": "b"}), payload)


def test_payload_kinds():
    assert commands.parse_payload("ABCD2345") == ("invite", "ABCD2345", None)
    assert commands.parse_payload("_sABCD2345") == ("shop", "ABCD2345", None)
    assert commands.parse_payload("_p!!!") == ("invite", "_p!!!", None)  # undecodable: an (unknown) code


# ---- supply pool ----------------------------------------------------------------------------------

@pytest.fixture
def pool(rt, shop):  # noqa: ANN001, ANN201
    """Two open SKUs and one that unlocks at two stars (二星); Ann is one-star."""
    open_sku = shop.card_sku(keys=3, price=10_000, code="OPEN-1")
    shop.card_sku(keys=3, price=5_000, code="OPEN-2")
    locked = shop.card_sku(keys=3, price=20_000, code="LOCK-1")
    with db.connection_context():
        Sku.update(min_rank=2).where(Sku.id == locked.id).execute()
        Sku.update(max_markup_bp=1000).where(Sku.id == open_sku.id).execute()
    return join("ann", rank=1)


def test_products_lists_the_pool_with_prices_and_locks(pool):
    replies = say("/products")
    text = text_of(replies)
    assert "OPEN-1 · 会员卡 OPEN-1 · ¥100.00 · 10% · 最高加价 ¥10.00" in text
    assert "OPEN-2" in text
    assert "🔒 LOCK-1" in text and "二星解锁" in text
    # buttons promote the open ones only
    data = [b.data for r in replies for row in r.buttons for b in row]
    assert data == ["promo:OPEN-1", "promo:OPEN-2"]


def test_markup_sets_the_price_through_my_link(pool):
    assert "已设置 OPEN-1 加价 ¥5.50" in text_of(say("加价 OPEN-1 5.5"))
    with db.connection_context():
        assert CreatorPrice.get().markup_fen == 550
    assert "¥105.50（含加价 ¥5.50）" in text_of(say("/products"))
    # above the SKU's cap (10% of 100 yuan), on locked supply, and removing it
    assert "最多加价 ¥10.00" in text_of(say("/markup OPEN-1 10.01"))
    assert "LOCK-1 需要达到二星" in text_of(say("/markup LOCK-1 1"))
    assert "已取消 OPEN-1 的加价" in text_of(say("/markup OPEN-1 0"))
    with db.connection_context():
        assert CreatorPrice.get().markup_fen == 0


def test_promo_gives_path_deep_link_and_poster(pool, settings):
    say("/markup OPEN-1 3")
    replies = say("推广 OPEN-1")
    reply = replies[0]
    assert f"pages/product/index?sku=OPEN-1&ref={pool.code}" in reply.text
    assert "你的售价：¥103.00" in reply.text
    assert reply.link and reply.link.startswith(f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start=_p")
    assert reply.image and reply.image.startswith(b"\x89PNG") and reply.image_key
    # the same from the products button; the poster is cached by content
    again = say(callback="promo:OPEN-1")[0]
    assert (again.text, again.image_key) == (reply.text, reply.image_key)
    # the deep link shows the product with ann's price
    payload = reply.link.split("start=", 1)[1]
    assert "¥103.00" in text_of(say("/start", who="7007", platform="telegram", payload=payload))


def test_promo_refuses_locked_and_unknown(pool):
    assert "LOCK-1 需要达到二星才能推广" in text_of(say("/promo LOCK-1"))
    assert "没有找到这个商品" in text_of(say("/promo NOPE"))


def test_poster_is_an_image_with_the_invite_link(pool, settings):
    reply = say("/poster")[0]
    assert reply.image and reply.image.startswith(b"\x89PNG")
    assert reply.link == f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start={pool.code}"
    assert pool.code in reply.text
    assert say("海报")[0].image_key == reply.image_key


def test_script_with_and_without_a_product(pool):
    plain = text_of(say("/script 直播 开场"))
    assert plain.startswith("【广告】直播 开场（30秒版）") and "ann" in plain
    with_product = text_of(say("文案 OPEN-2 朋友圈"))
    assert "【广告】" in with_product and "会员卡 OPEN-2" in with_product and "¥50.00" in with_product
    assert f"ref={pool.code}" in with_product
    # anyone may ask for a script; a shopper's script names them
    assert "小李" in text_of(say("/script", who="li", name="小李"))
