"""Reservations (models/reservations.py): one per person per session whatever the channel,
refusals for sessions that take none (nothing written), the subscribe consent, the keyset
stream the lottery hashes."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live, reservations
from models.db import utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.reservations import Reservation
from tests.factories import buyer, linked, live_session


def test_one_reservation_per_person_whatever_the_channel(conn):
    # given a session and a shopper whose Telegram account is linked to their mini-program user
    session = live_session()
    fan = linked(buyer("fan-1"), telegram="7001")
    # when they reserve from the mini-program, then again from Telegram
    first, created = reservations.reserve(fan, session.id, "miniapp")
    again, created_again = reservations.reserve(fan.id, session.id, "telegram")
    # then it is one reservation, made once, through the first channel
    assert created and not created_again and again.id == first.id and again.channel == "miniapp"
    assert reservations.count(session.id) == 1 and reservations.is_reserved(session.id, fan.id)
    assert not reservations.is_reserved(session.id, buyer("someone-else").id)


@pytest.mark.parametrize("case, error, code", [
    ("unknown", NotFound, "live_not_found"),
    ("cancelled", Conflict, "live_cancelled"),
    ("ended", Conflict, "live_ended"),
    ("live", Conflict, "reservations_closed"),
    ("past", Conflict, "reservations_closed"),
])
def test_sessions_that_take_no_reservation_are_refused_and_nothing_is_written(conn, case, error, code):
    # given a session in each state that takes no reservation (or none at all)
    start = utcnow() - dt.timedelta(minutes=1) if case == "past" else None
    state = case if case in ("cancelled", "ended", "live") else "scheduled"
    session_id = 999_999 if case == "unknown" else live_session(start=start, state=state).id
    # when a shopper reserves it
    with pytest.raises(error) as refused:
        reservations.reserve(buyer("fan-2"), session_id, "miniapp")
    # then the refusal names the reason and nothing was written
    assert refused.value.code == code
    assert Reservation.select().count() == 0


def test_an_unknown_channel_is_refused(conn):
    with pytest.raises(InvalidInput) as refused:
        reservations.reserve(buyer("fan-3"), live_session().id, "sms")
    assert refused.value.code == "invalid_channel" and Reservation.select().count() == 0


def test_subscribe_consent_is_kept_from_the_mini_program_only_and_rearmed(conn):
    # given a session; a shopper reserves from the mini-program with consent, one from Telegram "with" it
    session = live_session()
    fan, other = buyer("fan-4"), buyer("fan-5")
    made, _ = reservations.reserve(fan, session.id, "miniapp", wxa_consent=True)
    chat, _ = reservations.reserve(other, session.id, "telegram", wxa_consent=True)
    assert made.wxa_consent and not chat.wxa_consent
    # when the consent is used by a message and the shopper reserves again with a new consent
    Reservation.update(wxa_consent=False).where(Reservation.id == made.id).execute()
    again, created = reservations.reserve(fan, session.id, "miniapp", wxa_consent=True)
    # then the same reservation carries one unused consent again
    assert not created and again.id == made.id and Reservation.get_by_id(made.id).wxa_consent


def test_reserved_after_streams_in_ascending_keyset_pages(conn):
    # given 7 reservations of a session and one of another session
    session, other = live_session(), live_session()
    ids = [reservations.reserve(buyer(f"k-{i}"), session.id, "miniapp")[0].id for i in range(7)]
    reservations.reserve(buyer("k-other"), other.id, "miniapp")
    # when they are read in pages of 3 after the last id seen
    seen, after = [], 0
    while page := reservations.reserved_after(session.id, after, 3):
        seen += page
        after = page[-1][0]
    # then every reservation of that session comes once, in id order, with its user
    assert [rid for rid, _ in seen] == ids == sorted(ids)
    assert all(Reservation.get_by_id(rid).user_id == uid for rid, uid in seen)


def test_withdraw_before_the_start_and_the_list_closes_at_the_start(conn):
    # given two reservations of a session
    session = live_session()
    fan, other = buyer("w-1"), buyer("w-2")
    reservations.reserve(fan, session.id, "miniapp")
    reservations.reserve(other, session.id, "miniapp")
    # when one is withdrawn before the start, then the session goes live
    assert reservations.cancel(fan, session.id) and not reservations.cancel(fan, session.id)
    live.go_live(None, session.id, actor="test")
    # then the other can no longer withdraw (the lottery has drawn from the list), nor anyone reserve
    with pytest.raises(Conflict):
        reservations.cancel(other, session.id)
    with pytest.raises(Conflict):
        reservations.reserve(fan, session.id, "miniapp")
    assert reservations.count(session.id) == 1
    assert reservations.counts([session.id]) == {session.id: 1}
