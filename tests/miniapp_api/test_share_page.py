"""The page a product share QR opens: the product at the sharing creator's price."""

from __future__ import annotations

from models import network
from models.db import db
from tests import factories


def test_the_share_page_shows_the_creators_price_and_the_mini_program_path(client, shop):
    # given a creator with a 3.00 yuan markup on a 19.90 SKU
    sku = shop.card_sku(keys=1, price=1990, code="SHARE-1")
    with db.connection_context():
        creator = factories.creator("sharer", name="分享人")
        network.set_markup(creator, sku.code, 300, default_cap_bp=3000)
    # when a shopper opens the creator's share link, and a plain one
    mine = client.get(f"/p/{sku.code}?ref={creator.code}")
    plain = client.get(f"/p/{sku.code}")
    # then the creator's link shows retail + markup and carries the ref into the mini-program
    assert mine.status_code == 200 and mine.mimetype == "text/html"
    assert "¥22.90" in mine.get_data(as_text=True)
    assert f"ref={creator.code}" in mine.get_data(as_text=True)
    assert "¥19.90" in plain.get_data(as_text=True) and "ref=" not in plain.get_data(as_text=True)


def test_unknown_products_and_mangled_refs_are_handled_politely(client, shop):
    sku = shop.card_sku(keys=1, price=500, code="SHARE-2")
    assert client.get("/p/NOPE").status_code == 404
    page = client.get(f"/p/{sku.code}?ref=<script>")
    assert page.status_code == 200 and "<script>" not in page.get_data(as_text=True)
    assert client.get(f"/p/{sku.code}?ref=UNKNOWNCODE").status_code == 200


def test_a_live_sessions_share_link_shows_its_start_in_shanghai_time(client):
    # given a session scheduled by a creator
    with db.connection_context():
        host = factories.creator("live-sharer", name="星星主播")
    session_id = factories.planned_session(host, in_hours=3, title="周末福利<专场>")
    # when someone opens its share link (reminders, the Telegram card and the poster's QR lead here)
    page = client.get(f"/live/{session_id}")
    text = page.get_data(as_text=True)
    # then the page names the session, its host, its state and start in Asia/Shanghai, escaped
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "周末福利&lt;专场&gt;" in text and "星星主播" in text and "即将开播" in text
    assert "Asia/Shanghai" in text and f"pages/live/index?id={session_id}" in text
    # and an unknown session is a polite 404
    assert client.get("/live/999999").status_code == 404
