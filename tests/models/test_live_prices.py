"""Live price ladders: the spec rule (parse_ladder), saving, what a ladder offers now, claims
and give-backs in the database."""

from __future__ import annotations

import pytest

from models import live_prices
from models.db import db
from models.errors import Conflict, InvalidInput
from models.live_prices import TierSpec, current_offer, parse_ladder
from tests.factories import laddered, tier_counts

RETAIL = 9900


def test_a_tier_list_becomes_its_tiers_in_order():
    # given two tiers as units and as buyer ranges
    by_units = {"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]}
    by_range = {"tiers": [{"first": 1, "last": 50, "price_fen": 990}, {"first": 51, "last": 100, "price_fen": 1990}]}
    # when parsed, then both give the same ladder
    assert parse_ladder(by_units, RETAIL) == parse_ladder(by_range, RETAIL) == [TierSpec(50, 990),
                                                                                TierSpec(50, 1990)]
    assert parse_ladder(None, RETAIL) == []


def test_a_step_rule_is_materialised_down_to_its_floor():
    # given "from 99 yuan, 10 yuan less every 100 buyers, never under 59, 700 units"
    spec = {"step": {"start_fen": 9900, "drop_fen": 1000, "every": 100, "floor_fen": 5900, "units": 700}}
    # when parsed, then the floor tier takes every unit left
    assert parse_ladder(spec, RETAIL) == [TierSpec(100, 9900), TierSpec(100, 8900), TierSpec(100, 7900),
                                          TierSpec(100, 6900), TierSpec(300, 5900)]
    # and a rule whose units end before the floor stops there
    short = {"step": {"start_fen": 9900, "drop_fen": 1000, "every": 100, "floor_fen": 5900, "units": 150}}
    assert parse_ladder(short, RETAIL) == [TierSpec(100, 9900), TierSpec(50, 8900)]


@pytest.mark.parametrize(("spec", "code"), [
    ({"tiers": [{"units": 10, "price_fen": -1}]}, "negative_price"),
    ({"tiers": [{"units": 10, "price_fen": 0}]}, "zero_price"),
    ({"tiers": [{"units": 10, "price_fen": RETAIL + 1}]}, "price_over_retail"),
    ({"tiers": [{"units": 0, "price_fen": 990}]}, "zero_units"),
    ({"tiers": [{"first": 1, "last": 50, "price_fen": 990}, {"first": 40, "last": 90, "price_fen": 1990}]},
     "overlapping_tiers"),
    ({"tiers": [{"first": 1, "last": 50, "price_fen": 990}, {"first": 60, "last": 90, "price_fen": 1990}]},
     "overlapping_tiers"),
    ({"tiers": [{"units": 5, "price_fen": 990}, {"units": 5, "price_fen": 990}]}, "duplicate_tiers"),
    ({"tiers": [{"units": 1, "price_fen": 100 + i} for i in range(21)]}, "too_many_tiers"),
    ({"step": {"start_fen": 9900, "drop_fen": 1, "every": 1, "floor_fen": 100, "units": 500}}, "too_many_tiers"),
    ({"step": {"start_fen": 9900, "drop_fen": 1000, "every": 0, "floor_fen": 5900, "units": 5}}, "zero_units"),
    ({"step": {"start_fen": 5900, "drop_fen": 1000, "every": 10, "floor_fen": 9900, "units": 5}}, "invalid_ladder"),
    ({"tiers": [{"units": "5", "price_fen": 990}]}, "invalid_ladder"),
    ({"tiers": [{"units": True, "price_fen": 990}]}, "invalid_ladder"),
    ({"tiers": [], "step": {}}, "invalid_ladder"),
    ({"tiers": []}, "invalid_ladder"),
    ({"tiers": [{"units": 5, "price_fen": 990, "extra": 1}]}, "invalid_ladder"),
    ("50 at 9.9", "invalid_ladder"),
])
def test_a_bad_ladder_is_refused_with_its_code(spec, code):  # noqa: ANN001
    # when a bad spec is parsed, then it is refused naming what is wrong
    with pytest.raises(InvalidInput) as refused:
        parse_ladder(spec, RETAIL)
    assert refused.value.code == code


def test_the_offer_is_the_first_tier_with_room_and_the_last_price_when_sold_out():
    # given tiers (seq, units, taken, price)
    # then the first tier with room is offered, with what is left there and in all
    assert current_offer([(0, 50, 50, 990), (1, 50, 10, 1990)]) == {
        "price_fen": 1990, "tier": 2, "left_at_tier": 40, "left_total": 40, "sold_out": False}
    assert current_offer([(0, 50, 50, 990), (1, 50, 50, 1990)])["sold_out"] is True


def test_offers_of_a_session_and_claims_across_the_boundary(shop):
    # given a pin with tiers of 2 at 9.90 and 2 at 19.90
    sku = shop.card_sku(keys=10, price=RETAIL)
    session, pin = laddered(sku, ((2, 990), (2, 1990)))
    with db.connection_context():
        assert live_prices.offers(session.id) == {pin.id: {
            "price_fen": 990, "tier": 1, "left_at_tier": 2, "left_total": 4, "sold_out": False}}
        # when places are claimed one by one (and one 2-unit claim that fits only tier 2)
        with db.atomic():
            first = live_prices.claim(pin.id, 1)
            pair = live_prices.claim(pin.id, 2)
            second = live_prices.claim(pin.id, 1)
            none = live_prices.claim(pin.id, 1)
        # then each took the first tier with room for all it asked, and nothing is left
        assert (first.seq, first.price_fen) == (0, 990)
        assert (pair.seq, pair.price_fen) == (1, 1990)
        assert (second.seq, second.price_fen) == (0, 990)
        assert none is None
        assert live_prices.offers(session.id)[pin.id]["sold_out"] is True
        assert live_prices.left_of(pin.id) == 0


def test_a_ladder_with_buyers_cannot_be_replaced(shop):
    # given a ladder with one place taken
    sku = shop.card_sku(keys=3, price=RETAIL)
    _, pin = laddered(sku, ((2, 990),))
    with db.connection_context(), db.atomic():
        live_prices.claim(pin.id, 1)
    # when it is saved again, then it is refused and kept
    with db.connection_context(), pytest.raises(Conflict) as refused, db.atomic():
        live_prices.save_ladder(pin, [TierSpec(5, 500)])
    assert refused.value.code == "ladder_in_use"
    assert tier_counts(pin.id) == [(2, 1, 0)]
