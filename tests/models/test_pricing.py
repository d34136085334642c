"""The selling price (retail + markup) and the markup cap, models/pricing.py: the pure rules,
their invariants, and the PostgreSQL hot path (qx_place_order prices orders in SQL) agreeing
with the Python rule through the real API, on whichever backend the suite runs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import network
from models.db import db
from models.errors import InvalidInput
from models.orders import Order
from models.pricing import BP, markup_cap, selling_price
from tests.factories import named

API = "/api/v1"


@dataclass(frozen=True)
class Sku:
    retail_price_fen: int
    max_markup_bp: int | None = None


# -- the pure rules ----------------------------------------------------------------------------

def test_selling_price_is_retail_plus_markup():
    assert selling_price(Sku(1990), 0) == 1990
    assert selling_price(Sku(1990), 310) == 2300


def test_markup_cap_is_the_skus_share_of_retail_else_the_default_rounded_down():
    assert markup_cap(Sku(10_000), 3000) == 3000  # the default: 30% of 100 yuan
    assert markup_cap(Sku(10_000, max_markup_bp=1000), 3000) == 1000  # the SKU's own cap wins
    assert markup_cap(Sku(10_000, max_markup_bp=0), 3000) == 0  # 0 is a cap, not "unset"
    assert markup_cap(Sku(1999, max_markup_bp=1500), 3000) == 299  # 299.85 fen -> 299


retail = st.integers(min_value=1, max_value=10**9)
bps = st.integers(min_value=0, max_value=BP)


@given(retail, bps, st.one_of(st.none(), bps))
def test_markup_cap_is_within_retail_and_exact_to_the_fen(price, default_bp, sku_bp):
    cap = markup_cap(Sku(price, sku_bp), default_bp)
    used = default_bp if sku_bp is None else sku_bp
    assert 0 <= cap <= price
    assert cap * BP <= price * used < (cap + 1) * BP  # floor, not round


@given(retail, st.integers(min_value=0, max_value=10**9))
def test_selling_price_never_below_retail_and_the_markup_comes_back_out(price, markup):
    sold = selling_price(Sku(price), markup)
    assert sold >= price
    assert sold - price == markup


def test_set_markup_refuses_one_fen_above_the_cap(rt, shop):
    # given a 19.99-yuan SKU capped at 15%: 299 fen
    card = shop.card_sku(keys=1, price=1999, code="CAP-1")
    with db.connection_context():
        card.max_markup_bp = 1500
        card.save()
        creator = named("cap-host")
        cap = markup_cap(card, rt.settings.DEFAULT_MAX_MARKUP_BP)
        # then the cap itself is accepted, one fen more is refused
        assert network.set_markup(creator, card.code, cap, default_cap_bp=rt.settings.DEFAULT_MAX_MARKUP_BP) == 299
        with pytest.raises(InvalidInput) as refused:
            network.set_markup(creator, card.code, cap + 1, default_cap_bp=rt.settings.DEFAULT_MAX_MARKUP_BP)
        assert refused.value.code == "markup_too_high"
        # and the price through the creator is the rule's
        assert network.price_through(creator, card) == selling_price(card, 299) == 2298
        assert network.price_through(None, card) == 1999


# -- the SQL mirror: qx_place_order on PostgreSQL, the Python rule on SQLite ------------------

@pytest.mark.parametrize("quantity, markup", [(1, 310), (3, 310), (2, 0)])
def test_an_order_placed_through_the_api_costs_selling_price_times_quantity(client, login, shop, quantity, markup):
    # given a 19.90-yuan card and a creator who marks it up
    card = shop.card_sku(keys=5, price=1990, code="PRICED")
    host = login("price-host")
    joined = client.post(f"{API}/creator/join", json={"name": "Host"}, headers=host)
    assert joined.status_code == 200, joined.json
    put = client.put(f"{API}/creator/prices/{card.code}", json={"markup_fen": markup}, headers=host)
    assert put.status_code == 200, put.json
    # when a buyer orders through the creator's ref
    resp = client.post(f"{API}/orders", json={"sku": card.code, "quantity": quantity, "ref": joined.json["code"]},
                       headers=login("price-buyer"))
    assert resp.status_code == 201, resp.json
    # then the stored order (on PostgreSQL: the row qx_place_order priced and wrote in SQL) costs
    # the Python rule's price x quantity
    with db.connection_context():
        order = Order.get_by_id(resp.json["id"])
    assert resp.json["amount_fen"] == order.amount_fen == selling_price(card, markup) * quantity
    assert (order.unit_price_fen, order.markup_fen) == (selling_price(card, markup), markup * quantity)
