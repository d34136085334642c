"""Share posters drawn with Pillow and qrcode: a creator's invite poster and per-product posters.

- `invite_poster(creator)`: the creator's name and star level, the slogan, a QR code of the
  creator's Telegram deep link (t.me/<bot>?start=<invite code>) and the invite code in text.
- `product_poster(creator, sku)`: the product, the creator's selling price (retail + the
  creator's markup) and a QR code of the promo link `<PUBLIC_BASE_URL>/p/<sku>?ref=<code>`.

Both return `(png_bytes, key)`. The key is a hash of everything drawn plus `LAYOUT_VERSION`
and the font file's identity, so a poster is rendered once and then read back from
`POSTER_DIR/<key>.png`; any change to what is drawn gives a new key (the key doubles as a media
cache key for the platforms, see bots.types.Reply.image_key).

CJK text is set in Noto Sans SC from the `pylopdf-fonts-zh-cn` pip package (SIL OFL 1.1): no
system fonts. Characters the font has no glyph for (emoji in a nickname, say) are left out of
the drawing rather than shown as tofu boxes: `missing_glyphs` finds them by comparing each
character's rendered mask with the font's .notdef glyph.

Speed: a 600x900 canvas whose background is drawn once per process, fonts loaded once per
process and size, the QR matrix turned into an image in one step and scaled with NEAREST, and
a fast PNG compression level: an uncached render takes well under 30 ms on 2 cores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import unicodedata
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import qrcode
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M

from bots.transports import refresh_image
from models.money import rmb
from models.network import price_through

if TYPE_CHECKING:
    from models.catalog import Sku
    from models.network import Creator
    from qianxing.settings import Settings

LAYOUT_VERSION = 1
WIDTH, HEIGHT = 600, 900
SLOGAN = "加入千星计划，带货分佣"
PNG_COMPRESS_LEVEL = 1  # flat colours compress well even at level 1; level 6 costs ~3x the time

_RED, _ORANGE = (178, 34, 52), (240, 112, 56)
_INK, _GREY, _WHITE, _GOLD = (40, 30, 28), (130, 120, 116), (255, 255, 255), (255, 214, 102)
_CARD_BOX = (40, 190, WIDTH - 40, HEIGHT - 40)

_lock = threading.Lock()
_stats = {"renders": 0, "hits": 0}
# FreeType faces are not safe to use from two threads at once (gunicorn's threads, the worker's
# pool): glyph probing and drawing share one lock; PNG encoding runs outside it.
_draw_lock = threading.RLock()


def font_path() -> Path:
    import pylopdf_fonts_zh_cn

    return Path(pylopdf_fonts_zh_cn.sans_path())


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: CJK needs no shaping, and the drawing is the same with or without libraqm.
    return ImageFont.truetype(str(font_path()), size, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=1)
def _font_identity() -> str:
    path = font_path()
    return f"{path.name}:{path.stat().st_size}"


# ---- glyph coverage -------------------------------------------------------------------------

_PROBE_SIZE = 24
_NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no font here maps: renders .notdef
_coverage: dict[str, bool] = {}


def _mask_signature(ch: str) -> tuple[tuple[int, int], bytes]:
    mask = _font(_PROBE_SIZE).getmask(ch)
    return mask.size, bytes(mask)


@lru_cache(maxsize=1)
def _notdef() -> tuple[tuple[int, int], bytes]:
    return _mask_signature(_NOTDEF_PROBE)


def has_glyph(ch: str) -> bool:
    """True when the font draws `ch` with a glyph of its own (not the .notdef box)."""
    known = _coverage.get(ch)
    if known is None:
        if ch == " ":
            known = True
        elif unicodedata.category(ch)[0] in ("C", "Z"):  # controls, format chars, odd spaces
            known = False
        else:
            with _draw_lock:
                known = _mask_signature(ch) != _notdef()
        _coverage[ch] = known
    return known


def missing_glyphs(text: str) -> str:
    """The characters of `text` the font cannot draw, in order, without repeats."""
    return "".join(dict.fromkeys(ch for ch in text if not has_glyph(ch)))


def drawable(text: str) -> str:
    """`text` with whitespace runs made single spaces and undrawable characters left out."""
    text = " ".join(text.split())
    return "".join(ch for ch in text if has_glyph(ch)).strip()


# ---- what a poster shows --------------------------------------------------------------------


@dataclass(frozen=True)
class InviteCard:
    name: str
    level: str
    code: str
    link: str  # the QR code's content
    bot: str

    kind = "invite"


@dataclass(frozen=True)
class ProductCard:
    title: str
    subtitle: str
    price_fen: int
    link: str  # the QR code's content
    creator: str
    code: str  # the creator's invite code

    kind = "product"


Card = InviteCard | ProductCard


def poster_key(card: Card) -> str:
    """A hash of everything drawn: equal keys mean identical images."""
    payload = {"v": LAYOUT_VERSION, "font": _font_identity(), "size": [WIDTH, HEIGHT], "kind": card.kind,
               **asdict(card)}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


# ---- drawing --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _background() -> Image.Image:
    """A red-to-orange gradient with a white rounded card, drawn once per process."""
    column = Image.linear_gradient("L").resize((1, HEIGHT))
    base = Image.composite(Image.new("RGB", (1, HEIGHT), _ORANGE), Image.new("RGB", (1, HEIGHT), _RED), column)
    image = base.resize((WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle(_CARD_BOX, radius=28, fill=_WHITE)
    draw.text((WIDTH // 2, 52), "千星计划", font=_font(40), fill=_GOLD, anchor="mt")
    return image


def _fit(text: str, size: int, width: int) -> str:
    """`text` cut (with an ellipsis) to fit `width` pixels at `size`."""
    font = _font(size)
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _wrap(text: str, size: int, width: int, lines: int) -> list[str]:
    """`text` broken into at most `lines` lines of `width` pixels, the last one cut to fit."""
    font, out, rest = _font(size), [], text
    while rest and len(out) < lines - 1:
        cut = len(rest)
        while cut > 1 and font.getlength(rest[:cut]) > width:
            cut -= 1
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        out.append(_fit(rest, size, width))
    return out


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR code's modules (True = dark), without the quiet zone."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    qr.add_data(data)
    qr.make(fit=True)
    return qr.get_matrix()


def _qr_image(data: str, target: int) -> tuple[Image.Image, int]:
    """The QR code as a black-on-white image of at most `target` pixels, whole pixels per
    module; returns it and its module size."""
    matrix = qr_matrix(data)
    n = len(matrix)
    small = Image.frombytes("L", (n, n), bytes(0 if dark else 255 for row in matrix for dark in row))
    box = max(1, target // n)
    return small.resize((n * box, n * box), Image.NEAREST), box


def _paste_qr(image: Image.Image, data: str, top: int, target: int) -> int:
    """Draws the QR centred at `top` with a white quiet zone; returns the y below it."""
    qr, box = _qr_image(data, target)
    left = (WIDTH - qr.width) // 2
    image.paste(qr, (left, top))
    return top + qr.height


def _draw_invite(card: InviteCard) -> Image.Image:
    image = _background().copy()
    draw = ImageDraw.Draw(image)
    draw.text((WIDTH // 2, 118), SLOGAN, font=_font(30), fill=_WHITE, anchor="mt")
    draw.text((WIDTH // 2, 232), _fit(card.name, 44, 460), font=_font(44), fill=_INK, anchor="mt")
    level = f"★ {card.level}" if has_glyph("★") else card.level
    badge_w = int(_font(26).getlength(level)) + 44
    x0 = (WIDTH - badge_w) // 2
    draw.rounded_rectangle((x0, 300, x0 + badge_w, 344), radius=22, fill=_RED)
    draw.text((WIDTH // 2, 322), level, font=_font(26), fill=_GOLD, anchor="mm")
    bottom = _paste_qr(image, card.link, 374, 300)
    draw.text((WIDTH // 2, bottom + 28), f"邀请码 {card.code}", font=_font(32), fill=_INK, anchor="mt")
    draw.text((WIDTH // 2, bottom + 84), _fit(f"扫码加入 · Telegram @{card.bot}", 20, 480), font=_font(20),
              fill=_GREY, anchor="mt")
    return image


def _draw_product(card: ProductCard) -> Image.Image:
    image = _background().copy()
    draw = ImageDraw.Draw(image)
    draw.text((WIDTH // 2, 118), _fit(f"{card.creator} 为你推荐", 30, 500), font=_font(30), fill=_WHITE,
              anchor="mt")
    y = 226
    for line in _wrap(card.title, 36, 470, 2):
        draw.text((WIDTH // 2, y), line, font=_font(36), fill=_INK, anchor="mt")
        y += 48
    if card.subtitle:
        draw.text((WIDTH // 2, y + 4), _fit(card.subtitle, 24, 470), font=_font(24), fill=_GREY, anchor="mt")
        y += 36
    draw.text((WIDTH // 2, y + 14), rmb(card.price_fen), font=_font(60), fill=_RED, anchor="mt")
    bottom = _paste_qr(image, card.link, y + 100, 270)
    draw.text((WIDTH // 2, bottom + 24), "扫码购买", font=_font(28), fill=_INK, anchor="mt")
    draw.text((WIDTH // 2, bottom + 66), f"推荐码 {card.code}", font=_font(20), fill=_GREY, anchor="mt")
    return image


def render(card: Card) -> bytes:
    """The poster's PNG bytes, drawn now (no cache)."""
    with _draw_lock:
        image = _draw_invite(card) if isinstance(card, InviteCard) else _draw_product(card)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    with _lock:
        _stats["renders"] += 1
    return out.getvalue()


def cached(card: Card, poster_dir: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The poster from `poster_dir/<key>.png`, rendered and stored there on a miss."""
    key = poster_key(card)
    path = Path(poster_dir) / f"{key}.png"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        pass
    else:
        refresh_image(path)
        with _lock:
            _stats["hits"] += 1
        return data, key
    data = render(card)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # atomic: a reader sees the whole file or none
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data, key


def render_stats() -> dict[str, int]:
    """Renders and cache hits in this process so far."""
    with _lock:
        return dict(_stats)


# ---- from the domain ------------------------------------------------------------------------


def level_name(rank: int) -> str:
    from models.levels import UNRANKED_NAME, StarLevel

    if rank <= 0:
        return UNRANKED_NAME  # the name the level command and progress use too
    row = StarLevel.get_or_none(StarLevel.rank == rank)
    return row.name if row is not None else f"{rank}星"


def _display_name(creator: Creator) -> str:
    return drawable(creator.name or "") or f"创作者 {creator.code}"


def deep_link(creator: Creator, settings: Settings) -> str:
    return f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start={creator.code}"


def promo_link(creator: Creator, sku: Sku, settings: Settings) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/p/{quote(sku.code, safe='')}?ref={quote(creator.code, safe='')}"


def invite_card(creator: Creator, *, settings: Settings) -> InviteCard:
    s = settings
    return InviteCard(name=_display_name(creator), level=drawable(level_name(creator.rank)),
                      code=creator.code, link=deep_link(creator, s), bot=s.TELEGRAM_BOT_USERNAME)


def product_card(creator: Creator, sku: Sku, *, settings: Settings) -> ProductCard:
    s = settings
    title = drawable(sku.product.title) or drawable(sku.name) or sku.code
    subtitle = drawable(sku.name)
    return ProductCard(title=title, subtitle="" if subtitle == title else subtitle,
                       price_fen=price_through(creator, sku), link=promo_link(creator, sku, s),
                       creator=_display_name(creator), code=creator.code)


def invite_poster(creator: Creator, *, settings: Settings) -> tuple[bytes, str]:
    """The creator's invite poster: (PNG bytes, content-hash key)."""
    s = settings
    return cached(invite_card(creator, settings=s), s.POSTER_DIR)


def product_poster(creator: Creator, sku: Sku | str, *, settings: Settings) -> tuple[bytes, str]:
    """The creator's share poster for a SKU (a Sku or its code): (PNG bytes, content-hash key)."""
    if isinstance(sku, str):
        from models.catalog import get_sku

        sku = get_sku(sku)
    s = settings
    return cached(product_card(creator, sku, settings=s), s.POSTER_DIR)

