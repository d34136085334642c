"""Deep links and mini-program paths.

Deep-link payloads (Telegram `?start=`, WeChat QR scene): an invite code as is (join, then bind
to its owner), `_p<base64url("SKU\\nCODE")>` (a product through a creator's link) or
`_s<CODE>` (the shop through a creator's link). Generated invite codes never start with `_`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import quote

from models import earnings

PRODUCT_PAGE = "pages/product/index"


def telegram_link(settings: Any, payload: str) -> str | None:
    """https://t.me/<bot>?start=<payload>, or None when the payload does not fit (64 chars of
    A-Za-z0-9_-)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", payload):
        return None
    return f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start={payload}"


def product_payload(sku_code: str, creator_code: str) -> str:
    raw = f"{sku_code}\n{creator_code}".encode()
    return "_p" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def shop_payload(creator_code: str) -> str:
    return "_s" + creator_code


def product_path(sku_code: str, creator_code: str) -> str:
    return f"{PRODUCT_PAGE}?sku={quote(sku_code, safe='')}&ref={quote(creator_code, safe='')}"


def plain_product_path(sku_code: str) -> str:
    return f"{PRODUCT_PAGE}?sku={quote(sku_code, safe='')}"


def shop_path(creator_code: str) -> str:
    return f"{earnings.SHARE_PAGE}?ref={quote(creator_code, safe='')}"


def parse_payload(payload: str) -> tuple[str, str, str | None]:
    """('invite', code, None) | ('product', creator_code, sku) | ('shop', creator_code, None)."""
    if payload.startswith("_p"):
        body = payload[2:]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raw = ""
        sku, sep, code = raw.partition("\n")
        if sep and sku and code:
            return "product", code, sku
    if payload.startswith("_s") and len(payload) > 2:
        return "shop", payload[2:], None
    return "invite", payload, None
