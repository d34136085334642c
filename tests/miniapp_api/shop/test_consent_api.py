"""POST /api/v1/me/subscriptions through the real app: the promotion subscribe messages a shopper
accepted add up to the cap, and bad bodies answer 400 with nothing written."""

from __future__ import annotations

import pytest

from models import wakeup
from models.db import db
from models.users import User
from models.wakeup import SubscribeConsent

URL = "/api/v1/me/subscriptions"


def _held(openid: str) -> int:
    with db.connection_context():
        return wakeup.consents_of(User.get(User.openid == openid).id)


def _rows() -> int:
    with db.connection_context():
        return SubscribeConsent.select().count()


def test_accepted_consents_add_up_to_the_cap(client, login, rt):
    # given a logged-in shopper and the cap SUBSCRIBE_CONSENT_MAX (10 by default)
    auth = login("consent-fan")
    cap = rt.settings.SUBSCRIBE_CONSENT_MAX
    # when they accept 3 promo messages, then 4 more
    first = client.post(URL, json={"topic": "promo", "accepted": 3}, headers=auth)
    second = client.post(URL, json={"topic": "promo", "accepted": 4}, headers=auth)
    # then 7 are held
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"topic": "promo", "remaining": 3}
    assert second.get_json() == {"topic": "promo", "remaining": 7} and _held("consent-fan") == 7
    # and accepting 10 more keeps them at the cap
    capped = client.post(URL, json={"topic": "promo", "accepted": 10}, headers=auth)
    assert capped.get_json()["remaining"] == cap and _held("consent-fan") == cap


@pytest.mark.parametrize("body", [
    {"topic": "promo", "accepted": 0},
    {"topic": "promo", "accepted": 11},
    {"topic": "promo", "accepted": -3},
    {"topic": "promo", "accepted": "3"},
    {"topic": "promo", "accepted": True},
    {"topic": "spam", "accepted": 1},
    {"topic": "promo"},
    {"accepted": 1},
    {"topic": "promo", "accepted": 1, "extra": 1},
    {"topic": "promo", "accepted": 10**12},
])
def test_bad_bodies_answer_400_and_write_nothing(client, login, body):
    # given a logged-in shopper
    auth = login("consent-bad")
    # when the body is not a topic and 1..10 accepted messages
    answer = client.post(URL, json=body, headers=auth)
    # then 400 with the one error shape, and no consent row
    assert answer.status_code == 400, answer.get_json()
    assert set(answer.get_json()["error"]) >= {"code", "message"}
    assert _rows() == 0


def test_consents_need_a_login(client):
    # given no token / when posting / then 401 and nothing written
    answer = client.post(URL, json={"topic": "promo", "accepted": 1})
    assert answer.status_code == 401 and _rows() == 0
