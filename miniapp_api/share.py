"""The landing pages behind share links and QR codes, plain HTML, no login, read-only:
`/p/<sku>?ref=<code>` (a creator's product at the creator's price), `/live/<id>` (a live
session: title, host, start in LIVE_TIMEZONE, state) and `/group/<team>` (a group-buy team: the
activity, group price against retail, progress "2/3，还差1人", time left or outcome; the group
card's button and the team poster's QR lead here), each saying how to open it in the
mini-program."""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, request

from miniapp_api.deps import runtime
from models import group_cards, live, live_rules
from models.catalog import get_sku
from models.db import utcnow
from models.errors import NotFound
from models.money import rmb
from models.network import CODE_PATTERN, attribute
from models.pricing import selling_price

share = Blueprint("share", __name__)

PRODUCT_PAGE = "pages/product/index"
LIVE_PAGE = "pages/live/index"
_LIVE_STATE = {"scheduled": "即将开播", "live": "正在直播", "ended": "直播已结束", "cancelled": "直播已取消"}


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


@share.get("/live/<int:session_id>")
def live_page(session_id: int) -> Response:
    """The page behind a session's share link (reminders, the Telegram card, the reservation poster)."""
    try:
        session = live.get_session(session_id)
    except NotFound:
        return Response(_page("直播不存在", "这场直播不存在或已被删除。"), status=404, mimetype="text/html")
    tz = runtime().settings.LIVE_TIMEZONE
    start = session.started_at if session.state != "scheduled" else session.scheduled_at
    path = f"{LIVE_PAGE}?id={session.id}"
    body = (f"<p>主播：{escape(session.creator.name or session.creator.code)}</p>"
            f"<p>{escape(_LIVE_STATE.get(session.state, session.state))}"
            + (f" · 开播时间 {escape(live_rules.local_time(start, tz))}（{escape(tz)}）" if start else "")
            + f"</p><p>在微信中打开小程序「千星」，进入页面：<code>{escape(path)}</code></p>")
    return Response(_page(session.title or f"直播 #{session.id}", body, raw=True), mimetype="text/html")


@share.get("/group/<int:team_id>")
def group_page(team_id: int) -> Response:
    """The page behind a team's share link: what it costs, how far it is, how to join."""
    card = group_cards.card_of(team_id) if team_id <= 2**53 else None
    if card is None:
        return Response(_page("拼团不存在", "这个团不存在或已被删除。"), status=404, mimetype="text/html")
    now = utcnow()
    join = ("<p>在微信中打开小程序「千星」参团（付款即占位），进入页面："
            f"<code>{escape(group_cards.team_path(card.team_id))}</code></p>") if group_cards.joinable_now(card, now) \
        else f"<p>想拼同款？进入页面：<code>{escape(group_cards.activity_path(card.activity_id))}</code></p>"
    body = (f"<p class=price>{escape(group_cards.price_line(card))}</p>"
            f"<p class=progress>进度：{escape(group_cards.progress(group_cards.shown_paid(card), card.size))}</p>"
            f"<p>{escape(group_cards.status_line(card, now))}</p>{join}")
    return Response(_page(f"拼团：{card.title}", body, raw=True), mimetype="text/html")


def _page(title: str, body: str, *, raw: bool = False) -> str:
    content = body if raw else f"<p>{escape(body)}</p>"
    return ("<!doctype html><html lang=zh-CN><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><h1>{escape(title)}</h1>{content}</html>")
