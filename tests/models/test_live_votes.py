"""Live votes (models/live_votes.py): a creator's poll in a live session, one vote per viewer,
closing by the creator, by time or with the session; every bad input refused with nothing
written."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live_votes
from models.db import db, utcnow
from models.errors import Conflict, InvalidInput, NotFound
from models.live_votes import LivePoll, LiveVote
from tests.factories import creator, end_session, live_session, on_air


def open_one(host, sid: int, options=("买", "不买"), duration_s: int | None = None, now=None):  # noqa: ANN001, ANN201
    with db.connection_context():
        return live_votes.open_poll(host, sid, live_votes.parse_poll("要不要买？", list(options), duration_s), now=now)


def option_ids(poll_id: int) -> list[int]:
    with db.connection_context():
        return [o["id"] for o in live_votes.results(poll_id)["options"]]


def counts() -> tuple[int, int]:
    with db.connection_context():
        return LivePoll.select().count(), LiveVote.select().count()


def test_one_vote_per_viewer_and_the_results(rt):
    # given a poll in a live session
    host, sid = on_air()
    poll = open_one(host, sid, ("买", "不买", "再看看"))
    yes, no, _ = option_ids(poll.id)
    with db.connection_context():
        # when three viewers vote
        live_votes.vote(1, poll.id, yes)
        live_votes.vote(2, poll.id, yes)
        mine = live_votes.vote(3, poll.id, no)
        # then the counts and my vote are shown
        assert [o["votes"] for o in mine["options"]] == [2, 1, 0]
        assert (mine["total"], mine["my_vote"], mine["closed"]) == (3, no, False)
        # and a second vote by the same viewer is refused and changes nothing
        with pytest.raises(Conflict) as twice:
            live_votes.vote(1, poll.id, no)
        assert twice.value.code == "already_voted"
        assert live_votes.results(poll.id)["total"] == 3
        assert LiveVote.select().count() == 3


def test_votes_after_the_creator_closed_it_or_its_time_ran_out_are_refused(rt):
    host, sid = on_air()
    now = utcnow()
    closed_by_hand = open_one(host, sid)
    timed = open_one(host, sid, duration_s=60, now=now)
    with db.connection_context():
        # when the creator closes one (twice: harmless) and the other's minute passes
        assert live_votes.close_poll(host, closed_by_hand.id, actor="test")[1] is True
        assert live_votes.close_poll(host, closed_by_hand.id, actor="test")[1] is False
        for poll, at in ((closed_by_hand, now), (timed, now + dt.timedelta(seconds=61))):
            # then votes are refused as closed, nothing written
            with pytest.raises(Conflict) as late:
                live_votes.vote(5, poll.id, option_ids(poll.id)[0], now=at)
            assert late.value.code == "poll_closed"
        # while the timed one still took votes inside its minute
        live_votes.vote(6, timed.id, option_ids(timed.id)[0], now=now + dt.timedelta(seconds=59))
    assert counts()[1] == 1


def test_polls_close_with_the_session(rt):
    # given a poll and a session that then ends
    host, sid = on_air()
    poll = open_one(host, sid)
    end_session(host, sid)
    with db.connection_context():
        # then the poll shows closed and takes no votes
        assert live_votes.public_polls(sid)[0]["closed"] is True
        with pytest.raises(Conflict):
            live_votes.vote(1, poll.id, option_ids(poll.id)[0])


def test_an_option_of_another_poll_or_an_unknown_poll_is_refused(rt):
    host, sid = on_air()
    first, second = open_one(host, sid), open_one(host, sid, ("A", "B"))
    with db.connection_context():
        with pytest.raises(NotFound) as wrong:
            live_votes.vote(1, first.id, option_ids(second.id)[0])
        with pytest.raises(NotFound) as unknown:
            live_votes.vote(1, 999_999, 1)
    assert (wrong.value.code, unknown.value.code) == ("unknown_option", "poll_not_found")
    assert counts() == (2, 0)


@pytest.mark.parametrize("question, options, duration, code", [
    ("", ["A", "B"], None, "invalid_question"),
    ("Q" * 121, ["A", "B"], None, "invalid_question"),
    ("要不要买？", ["A"], None, "invalid_options"),
    ("要不要买？", ["A", "B", "C", "D", "E", "F", "G"], None, "invalid_options"),
    ("要不要买？", ["A", "  "], None, "invalid_options"),
    ("要不要买？", ["A", "B" * 41], None, "invalid_options"),
    ("要不要买？", ["A", "A"], None, "duplicate_option"),
    ("要不要买？", ["A", "B"], 5, "invalid_duration"),
    ("要不要买？", ["A", "B"], 2 * 86400, "invalid_duration"),
    ("要不要买？", "A|B", None, "invalid_options"),
])
def test_a_bad_poll_is_refused(question, options, duration, code):
    with pytest.raises(InvalidInput) as bad:
        live_votes.parse_poll(question, options, duration)
    assert bad.value.code == code


def test_a_poll_needs_my_live_session(rt):
    # given a scheduled session, someone else's live one, and my live one with three open polls
    host = creator(name="主播")
    planned = live_session(host)
    _, theirs = on_air()
    _, mine = on_air(host)
    for _ in range(live_votes.MAX_OPEN_POLLS):
        open_one(host, mine)
    spec = live_votes.parse_poll("Q", ["A", "B"])
    with db.connection_context():
        for sid, error, code in ((planned.id, Conflict, "session_not_live"), (theirs, NotFound, "live_not_found"),
                                 (mine, Conflict, "too_many_open_polls")):
            # when a poll is opened there
            with pytest.raises(error) as refused:
                live_votes.open_poll(host, sid, spec)
            # then it is refused with its code
            assert refused.value.code == code
    assert counts()[0] == live_votes.MAX_OPEN_POLLS


def test_the_session_page_shows_recent_polls_with_my_vote(rt):
    host, sid = on_air()
    poll = open_one(host, sid)
    yes = option_ids(poll.id)[0]
    with db.connection_context():
        live_votes.vote(11, poll.id, yes)
        page_for_voter = live_votes.public_polls(sid, 11)
        page_for_other = live_votes.public_polls(sid, 12)
        anonymous = live_votes.public_polls(sid)
    assert page_for_voter[0]["my_vote"] == yes and page_for_voter[0]["total"] == 1
    assert page_for_other[0]["my_vote"] is None and anonymous[0]["my_vote"] is None
