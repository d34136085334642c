"""POST/DELETE /api/v1/live/sessions/<id>/reservation through the real app: reserve once per
person with the subscribe consent, withdraw, and the 4xx refusals with nothing written."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live
from models.db import db, utcnow
from models.reservations import Reservation
from tests.factories import live_session


def _url(session_id: int) -> str:
    return f"/api/v1/live/sessions/{session_id}/reservation"


def _count() -> int:
    with db.connection_context():
        return Reservation.select().count()


def test_reserve_with_consent_once_and_withdraw(client, login):
    # given a scheduled session and a logged-in shopper
    session = live_session()
    auth = login("api-fan")
    # when they reserve with the subscribe consent, then again without it
    first = client.post(_url(session.id), json={"subscribe_consent": True}, headers=auth)
    again = client.post(_url(session.id), json={}, headers=auth)
    # then one reservation that keeps the unused consent
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"session_id": session.id, "reserved": True, "created": True,
                                "subscribe_consent": True, "count": 1}
    assert again.get_json()["created"] is False and again.get_json()["subscribe_consent"] is True
    # and withdrawing it leaves none
    gone = client.delete(_url(session.id), headers=auth)
    assert gone.status_code == 200 and gone.get_json()["reserved"] is False and _count() == 0


@pytest.mark.parametrize("case, status, code", [
    ("unknown", 404, "live_not_found"),
    ("cancelled", 409, "live_cancelled"),
    ("past", 409, "reservations_closed"),
    ("ended", 409, "live_ended"),
])
def test_sessions_that_take_no_reservation_answer_4xx_and_write_nothing(client, login, case, status, code):
    # given a session that takes no reservation
    if case == "unknown":
        session_id = 424242
    elif case == "cancelled":
        session_id = live_session().id
        with db.connection_context():
            live.cancel(None, session_id, actor="test")
    elif case == "past":
        session_id = live_session(start=utcnow() - dt.timedelta(minutes=5)).id
    else:
        session_id = live_session(state="ended").id
    # when a shopper reserves it
    response = client.post(_url(session_id), json={"subscribe_consent": True}, headers=login("api-fan-2"))
    # then a clear 4xx and nothing written
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert _count() == 0


def test_bad_requests(client, login):
    session = live_session()
    auth = login("api-fan-3")
    # without a login, with a non-boolean consent, with an unknown field
    assert client.post(_url(session.id), json={}).status_code == 401
    assert client.post(_url(session.id), json={"subscribe_consent": "yes"}, headers=auth).status_code == 400
    assert client.post(_url(session.id), json={"consent": True}, headers=auth).status_code == 400
    assert client.post(_url(0), json={}, headers=auth).status_code in (400, 404)
    assert _count() == 0
