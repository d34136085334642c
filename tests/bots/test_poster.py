"""Invite and product posters: valid PNGs with the right QR code, CJK glyphs that really render,
and the content-hash cache (a hit reads the stored file, any drawn change gives a new key)."""

from __future__ import annotations

import io
import os
import sysconfig
import time
from pathlib import Path

import pytest
from PIL import Image

from bots import poster
from models import network
from models.db import db
from models.levels import DEFAULT_LEVELS, UNRANKED_NAME, StarLevel
from models.money import rmb
from models.network import Creator
from qianxing.settings import Settings
from tests import factories

SHOP_NAME = "小美的好物店"


@pytest.fixture
def cfg(rt, tmp_path: Path) -> Settings:  # noqa: ANN001
    """The test settings with posters stored under this test's tmp dir."""
    return rt.settings.model_copy(update={"POSTER_DIR": str(tmp_path / "posters")})


def read_qr(png: bytes) -> list[list[bool]]:
    """Reads the QR modules back from the image's pixels: the code is the only pure-black ink
    on the poster, so its bounding box is the code; each module is sampled at its centre."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    black = Image.eval(image.convert("L"), lambda v: 255 if v == 0 else 0)
    # convert("L") maps only (0, 0, 0) to 0 among the poster's colours: the ink is (40, 30, 28)
    left, top, right, bottom = black.getbbox()
    side = right - left
    assert side == bottom - top, "the QR code is square"
    # The top-left finder pattern is 7 modules wide: count its dark run on the first row.
    run = 0
    while image.getpixel((left + run, top)) == (0, 0, 0):
        run += 1
    module = run // 7
    assert module >= 4 and run == 7 * module and side % module == 0, (run, side)
    n = side // module
    return [[image.getpixel((left + x * module + module // 2, top + y * module + module // 2)) == (0, 0, 0)
             for x in range(n)] for y in range(n)]


def test_invite_poster_is_a_png_with_the_deep_link_qr_name_level_and_code(cfg: Settings) -> None:
    # given a new creator (rank 0)
    creator = factories.creator(name=SHOP_NAME)

    # when the invite poster is drawn
    with db.connection_context():
        png, key = poster.invite_poster(creator, settings=cfg)
        card = poster.invite_card(creator, settings=cfg)

    # then it is a 600x900 PNG whose QR code is the creator's Telegram deep link
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert Image.open(io.BytesIO(png)).size == (poster.WIDTH, poster.HEIGHT) == (600, 900)
    link = f"https://t.me/{cfg.TELEGRAM_BOT_USERNAME}?start={creator.code}"
    assert card.link == link
    assert read_qr(png) == poster.qr_matrix(link)
    # and it shows the name, the unranked level name and the invite code
    assert (card.name, card.level, card.code) == ("小美的好物店", "未入星", creator.code)
    assert len(key) == 40 and (Path(cfg.POSTER_DIR) / f"{key}.png").read_bytes() == png


def test_invite_poster_shows_the_star_level_by_rank(cfg: Settings) -> None:
    # given a creator promoted to rank 2
    creator = factories.creator(name="阿强")
    with db.connection_context():
        before = poster.invite_poster(creator, settings=cfg)[1]
        Creator.update(rank=2).where(Creator.id == creator.id).execute()
        creator = Creator.get_by_id(creator.id)

        # when the poster is asked for again
        png, key = poster.invite_poster(creator, settings=cfg)
        card = poster.invite_card(creator, settings=cfg)

    # then it carries the level's name from the levels table, as a new poster
    assert card.level == DEFAULT_LEVELS[1].name == "二星"
    assert key != before


def test_product_poster_prices_retail_plus_the_creators_markup_and_links_the_promo_url(shop, cfg: Settings) -> None:  # noqa: ANN001
    # given a SKU at 19.90 and a creator with a 3.00 markup on it
    sku = shop.card_sku(price=1990, code="TXVIP-1M")
    creator = factories.creator(name=SHOP_NAME)
    with db.connection_context():
        network.set_markup(creator, sku.code, 300, default_cap_bp=cfg.DEFAULT_MAX_MARKUP_BP)

        # when the product poster is drawn (by Sku or by code)
        png, key = poster.product_poster(creator, sku, settings=cfg)
        again, same = poster.product_poster(creator, sku.code, settings=cfg)
        card = poster.product_card(creator, sku, settings=cfg)

    # then the selling price is retail + markup and the QR is the promo link with the ref
    assert card.price_fen == 2290 and rmb(card.price_fen) == "¥22.90"
    link = f"{cfg.PUBLIC_BASE_URL}/p/TXVIP-1M?ref={creator.code}"
    assert card.link == link
    assert read_qr(png) == poster.qr_matrix(link)
    assert Image.open(io.BytesIO(png)).size == (600, 900)
    assert card.title == "Product TXVIP-1M" and card.subtitle == "会员卡 TXVIP-1M"
    assert (again, same) == (png, key)


def test_product_poster_without_markup_shows_retail(shop, cfg: Settings) -> None:  # noqa: ANN001
    sku = shop.card_sku(price=990)
    creator = factories.creator(name=SHOP_NAME)
    with db.connection_context():
        assert poster.product_card(creator, sku, settings=cfg).price_fen == 990


def test_cjk_text_renders_with_real_glyphs_from_a_packaged_font() -> None:
    # given the poster font: shipped by a pip package, not a system font
    path = poster.font_path()
    assert path.is_file()
    assert Path(sysconfig.get_paths()["purelib"]) in path.parents or "site-packages" in path.parts
    assert not str(path).startswith(("/usr/share/fonts", "/usr/local/share/fonts"))

    # when "千星" and a code point no font maps are drawn
    font = poster._font(48)
    real = [font.getmask(ch) for ch in "千星"]
    tofu = font.getmask("\U0010fffd")

    # then the CJK glyphs are not the .notdef box, and differ from each other
    for mask in real:
        assert (mask.size, bytes(mask)) != (tofu.size, bytes(tofu))
        assert mask.getbbox() is not None  # some ink
    assert bytes(real[0]) != bytes(real[1])
    # and every character a poster draws is covered
    texts = [poster.SLOGAN, "千星计划", "邀请码", "扫码购买", "推荐码", "为你推荐", "扫码加入 · Telegram @",
             UNRANKED_NAME, "¥0123456789.…★", *(lv.name for lv in DEFAULT_LEVELS)]
    assert poster.missing_glyphs("".join(texts)) == ""


def test_uncovered_characters_are_left_out_instead_of_drawn_as_tofu(cfg: Settings) -> None:
    # given a creator whose nickname has an emoji and a private-use character
    creator = factories.creator(name="小美\U0001f338\U0010fffd 的店")

    # when the poster card is built
    with db.connection_context():
        card = poster.invite_card(creator, settings=cfg)

    # then only drawable characters remain, and a name with none falls back to the code
    assert poster.missing_glyphs("\U0001f338\U0010fffd") == "\U0001f338\U0010fffd"
    assert card.name == "小美 的店"
    nameless = factories.creator(name="\U0001f338\U0001f338")
    with db.connection_context():
        assert poster.invite_card(nameless, settings=cfg).name == f"创作者 {nameless.code}"


def test_a_cache_hit_returns_the_stored_bytes_without_rendering(cfg: Settings) -> None:
    # given a poster drawn once
    creator = factories.creator(name=SHOP_NAME)
    with db.connection_context():
        first, key = poster.invite_poster(creator, settings=cfg)
    path = Path(cfg.POSTER_DIR) / f"{key}.png"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # last used long ago
    inode = path.stat().st_ino
    stats = poster.render_stats()

    # when it is asked for again
    with db.connection_context():
        second, again = poster.invite_poster(creator, settings=cfg)

    # then the same bytes come from the file: nothing rendered, the file not rewritten, and
    # its modification time moved to now (it is in use: the pruning job keeps it)
    after = poster.render_stats()
    assert (second, again) == (first, key)
    assert after["renders"] == stats["renders"]
    assert after["hits"] == stats["hits"] + 1
    assert path.stat().st_ino == inode
    assert time.time() - path.stat().st_mtime < 60
    # and only the poster itself is in the directory (no temp files left behind)
    assert [p.name for p in Path(cfg.POSTER_DIR).iterdir()] == [f"{key}.png"]


def test_every_drawn_input_changes_the_key() -> None:
    base = poster.InviteCard(name="小美", level="一星", code="CODE1", link="https://t.me/b?start=CODE1", bot="b")
    variants = [
        base,
        poster.InviteCard(**{**base.__dict__, "name": "小美2"}),
        poster.InviteCard(**{**base.__dict__, "level": "二星"}),
        poster.InviteCard(**{**base.__dict__, "code": "CODE2"}),
        poster.InviteCard(**{**base.__dict__, "link": "https://t.me/b?start=CODE2"}),
        poster.InviteCard(**{**base.__dict__, "bot": "c"}),
    ]
    product = poster.ProductCard(title="会员", subtitle="", price_fen=990, link="http://x/p/A?ref=C",
                                 creator="小美", code="C")
    variants += [
        product,
        poster.ProductCard(**{**product.__dict__, "price_fen": 991}),
        poster.ProductCard(**{**product.__dict__, "title": "会员卡"}),
        poster.ProductCard(**{**product.__dict__, "subtitle": "月卡"}),
        poster.ProductCard(**{**product.__dict__, "link": "http://x/p/B?ref=C"}),
        poster.ProductCard(**{**product.__dict__, "creator": "阿强"}),
    ]
    keys = [poster.poster_key(v) for v in variants]
    assert len(set(keys)) == len(keys)
    # and equal cards have equal keys and identical images
    assert poster.poster_key(poster.InviteCard(**base.__dict__)) == keys[0]
    assert poster.render(base) == poster.render(poster.InviteCard(**base.__dict__))


def test_long_names_are_cut_to_fit(cfg: Settings) -> None:
    # given a creator with a very long name
    creator = factories.creator(name="超" * 60)

    # when the poster is drawn, then it still renders at the fixed size with a valid QR
    with db.connection_context():
        png, _ = poster.invite_poster(creator, settings=cfg)
    assert Image.open(io.BytesIO(png)).size == (600, 900)
    assert read_qr(png) == poster.qr_matrix(f"https://t.me/{cfg.TELEGRAM_BOT_USERNAME}?start={creator.code}")
    assert poster._fit("超" * 60, 44, 460).endswith("…")


def test_a_rank_missing_from_the_table_still_has_a_name(cfg: Settings) -> None:
    with db.connection_context():
        top = StarLevel.select().count()
        assert poster.level_name(top + 1) == f"{top + 1}星"
        assert poster.level_name(0) == "未入星"
