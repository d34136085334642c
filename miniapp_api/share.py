"""The landing page behind a creator's product share QR (`/p/<sku>?ref=<code>`): the product at
the creator's price and how to open it in the mini-program. Plain HTML, no login, read-only."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, request

from models.catalog import get_sku
from models.errors import NotFound
from models.money import rmb
from models.network import CODE_PATTERN, attribute
from models.pricing import selling_price

share = Blueprint("share", __name__)

PRODUCT_PAGE = "pages/product/index"


@share.get("/p/<sku_code>")
def product_page(sku_code: str) -> Response:
    ref = request.args.get("ref") or None
    if ref is not None and not CODE_PATTERN.match(ref):
        ref = None  # a mangled link still shows the product, at the plain price
    try:
        sku = get_sku(sku_code[:64])
    except NotFound:
        return Response(_page("商品已下架", "这个商品暂时买不到了。"), status=404, mimetype="text/html")
    who = attribute(ref, sku.id, None)
    price = selling_price(sku, who.markup_per_unit_fen)
    path = f"{PRODUCT_PAGE}?sku={sku.code}" + (f"&ref={ref}" if who.seller_id else "")
    body = (f"<p class=price>{rmb(price)}</p>"
            f"<p>{escape(sku.product.description)}</p>"
            f"<p>在微信中打开小程序「千星」，进入页面：<code>{escape(path)}</code></p>")
    return Response(_page(f"{sku.product.title} · {sku.name}", body, raw=True), mimetype="text/html")


def _page(title: str, body: str, *, raw: bool = False) -> str:
    content = body if raw else f"<p>{escape(body)}</p>"
    return ("<!doctype html><html lang=zh-CN><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><h1>{escape(title)}</h1>{content}</html>")
