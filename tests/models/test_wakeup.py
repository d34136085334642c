"""models/wakeup.py: who is dormant (paid once, nothing paid for N days, not woken in this
period), the (user, period) claim that makes a wake-up happen once, and the subscribe consents
(capped when given, never below zero when used)."""

from __future__ import annotations

import datetime as dt

from models import wakeup
from models.db import db, utcnow
from models.wakeup import WakeupSent
from tests.factories import buyer, dormant, paid, unpaid


def test_the_period_is_days_since_the_epoch_divided_by_its_length():
    # given moments around a 30-day period boundary (day 20,460 = 682 x 30)
    start = dt.datetime(1970, 1, 1) + dt.timedelta(days=20_460)
    # then they fall in the period their day number says
    assert wakeup.period_of(start, 30) == 682
    assert wakeup.period_of(start - dt.timedelta(seconds=1), 30) == 681
    assert wakeup.period_of(start + dt.timedelta(days=29, hours=23), 30) == 682
    assert wakeup.period_of(start, 1) == 20_460


def test_dormant_buyers_are_those_who_paid_once_and_nothing_for_n_days(rt, shop):
    sku = shop.card_sku(keys=10)
    # given a buyer who paid 40 days ago, one who paid 40 and 5 days ago, one who paid 31 days
    # ago, a user who never paid and one who only has an unpaid order
    old = dormant(sku, "old-fan", days_ago=40)
    back = dormant(sku, "back-fan", days_ago=40)
    paid(sku, "back-fan", dispatch=False)
    edge = dormant(sku, "edge-fan", days_ago=31)
    buyer("never-paid")
    unpaid(sku, "only-unpaid")
    now = utcnow()
    with db.connection_context():
        # when the dormant buyers of period 7 are listed (30 days without a paid order)
        found = wakeup.dormant_after(0, now=now, dormant_days=30, period=7)
        # then only the ones whose last paid order is older than 30 days, ascending
        assert found == [old.id, edge.id] and back.id not in found
        # and the keyset continues after a given id, with a limit
        assert wakeup.dormant_after(old.id, now=now, dormant_days=30, period=7) == [edge.id]
        assert wakeup.dormant_after(0, now=now, dormant_days=30, period=7, limit=1) == [old.id]
        # and with 35 days the 31-day buyer is not dormant yet
        assert wakeup.dormant_after(0, now=now, dormant_days=35, period=7) == [old.id]


def test_a_claimed_buyer_is_not_listed_or_claimed_again_in_the_period(rt, shop):
    sku = shop.card_sku(keys=5)
    fans = [dormant(sku, f"claim-{i}") for i in range(3)]
    ids = [f.id for f in fans]
    now = utcnow()
    with db.connection_context():
        # when two runs claim overlapping chunks of period 9
        with db.atomic():
            first = wakeup.claim(ids[:2], 9, now)
        with db.atomic():
            second = wakeup.claim(ids, 9, now)
        # then each buyer is claimed once, and a claimed buyer is no longer dormant in period 9
        assert (first, second) == (ids[:2], ids[2:])
        assert wakeup.dormant_after(0, now=now, dormant_days=30, period=9) == []
        # but is again in the next period
        assert wakeup.dormant_after(0, now=now, dormant_days=30, period=10) == ids
        assert WakeupSent.select().count() == 3


def test_consents_are_capped_when_given_and_never_below_zero_when_used(rt):
    fan, other = buyer("consent-a"), buyer("consent-b")
    with db.connection_context():
        # given 3 then 9 accepted with a cap of 10
        assert wakeup.accept_consent(fan.id, "promo", 3, cap=10) == 3
        assert wakeup.accept_consent(fan.id, "promo", 9, cap=10) == 10
        assert wakeup.accept_consent(other.id, "promo", 1, cap=10) == 1
        # when one is used for each, twice
        with db.atomic():
            assert wakeup.take_consents([fan.id, other.id]) == {fan.id, other.id}
        with db.atomic():
            assert wakeup.take_consents([fan.id, other.id]) == {fan.id}
        # then the one who had one left keeps using theirs, the other is at zero (not below)
        assert (wakeup.consents_of(fan.id), wakeup.consents_of(other.id)) == (8, 0)
        # and one given back after a refused push counts again
        wakeup.give_back_consents([other.id])
        assert wakeup.consents_of(other.id) == 1
