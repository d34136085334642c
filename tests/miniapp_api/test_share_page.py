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
