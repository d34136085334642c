"""The live dashboard and vote routes through the real app: viewers from /track entries and
heartbeats, paid orders from the real payment notification and delivery job, the creator's JSON
snapshot and its Server-Sent Events stream, and polls with one vote per viewer. Bad input is a
4xx with the JSON error shape and writes nothing."""

from __future__ import annotations

import json

import pytest

from models.db import db, utcnow
from models.live_votes import LivePoll, LiveVote
from models.network import Creator
from tests.factories import api_buy, end_session, fresh, live_session, on_air

API = "/api/v1"


@pytest.fixture
def host(client, login):  # noqa: ANN001, ANN201
    """A logged-in creator who is live now: (auth headers, creator, session id)."""
    auth = login("host-f")
    assert client.post(f"{API}/creator/join", json={"name": "小看板"}, headers=auth).status_code == 200
    with db.connection_context():
        creator = Creator.select().order_by(Creator.id.desc()).first()
    _, sid = on_air(fresh(creator))
    return auth, creator, sid


def board(client, auth: dict, sid: int) -> dict:  # noqa: ANN001
    resp = client.get(f"{API}/creator/live/sessions/{sid}/dashboard", headers=auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def rows() -> tuple[int, int]:
    with db.connection_context():
        return LivePoll.select().count(), LiveVote.select().count()


def test_entries_heartbeats_and_paid_orders_reach_the_dashboard(client, login, host, shop, fake_pay, run_jobs):
    auth, creator, sid = host
    card = shop.card_sku(keys=5, price=1990)
    viewer, other = login("viewer-1"), login("viewer-2")
    # when one viewer's mini-program reports a live-room entry and another sends a heartbeat
    entry = {"id": "entry-1", "creator": creator.code, "type": "live_entry", "ref": str(sid), "count": 1,
             "at": utcnow().isoformat() + "Z"}
    assert client.post(f"{API}/track", json={"events": [entry]}, headers=viewer).status_code == 200
    beat = client.post(f"{API}/live/sessions/{sid}/heartbeat", headers=other)
    assert beat.status_code == 200 and beat.json == {"online": 2}
    # and the first viewer buys in the live room, paid through WeChat Pay's notification
    api_buy(client, fake_pay, viewer, card, ref=creator.code, live=sid)
    run_jobs()
    # then the creator's dashboard shows them
    figures = board(client, auth, sid)
    assert (figures["online"], figures["unique_viewers"], figures["orders"], figures["gmv_fen"]) == (2, 2, 1, 1990)
    assert figures["orders_placed"] == 1  # counted by the order route as it was placed
    assert (figures["buyers"], figures["conversion_bp"]) == (1, 5000)
    assert [(p["sku"], p["units"]) for p in figures["products"]] == [(card.code, 1)]


def test_heartbeats_need_a_live_session_and_a_login(client, login, host):
    auth, creator, sid = host
    planned = live_session(fresh(creator))
    viewer = login("viewer-3")
    assert client.post(f"{API}/live/sessions/{sid}/heartbeat").status_code == 401
    missing = client.post(f"{API}/live/sessions/987654/heartbeat", headers=viewer)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "live_not_found"
    early = client.post(f"{API}/live/sessions/{planned.id}/heartbeat", headers=viewer)
    assert early.status_code == 409 and early.json["error"]["code"] == "session_not_live"


def test_only_the_owner_sees_the_dashboard(client, login, host):
    auth, _, sid = host
    other_creator = login("host-other")
    client.post(f"{API}/creator/join", json={}, headers=other_creator)
    for headers, code in ((other_creator, "live_not_found"), (login("no-creator"), "not_a_creator")):
        resp = client.get(f"{API}/creator/live/sessions/{sid}/dashboard", headers=headers)
        assert resp.status_code == 404 and resp.json["error"]["code"] == code
        stream = client.get(f"{API}/creator/live/sessions/{sid}/dashboard/stream", headers=headers)
        assert stream.status_code == 404


def sse_events(chunks) -> list[dict]:  # noqa: ANN001
    events = []
    for chunk in chunks:
        for block in chunk.decode().split("\n\n"):
            data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
            if data:
                events.append(json.loads("".join(data)))
    return events


def test_the_stream_sends_the_dashboard_as_server_sent_events(client, host):
    auth, _, sid = host
    # when the creator opens the stream
    resp = client.get(f"{API}/creator/live/sessions/{sid}/dashboard/stream", headers=auth, buffered=False)
    try:
        # then it is an event stream whose first event is the dashboard, with a reconnect delay
        assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
        first = next(iter(resp.response))
        assert first.startswith(b"retry: ") and b"event: dashboard" in first
        assert sse_events([first])[0]["session_id"] == sid
    finally:
        resp.close()


def test_the_stream_of_an_ended_session_is_one_event(client, host):
    auth, creator, sid = host
    end_session(fresh(creator), sid)
    resp = client.get(f"{API}/creator/live/sessions/{sid}/dashboard/stream", headers=auth)
    events = sse_events([resp.data])
    assert len(events) == 1 and events[0]["state"] == "ended"


def test_a_poll_one_vote_per_viewer_and_closing(client, login, host):
    auth, _, sid = host
    # when the creator opens a poll
    opened = client.post(f"{API}/creator/live/sessions/{sid}/polls",
                         json={"question": "要不要买？", "options": ["买", "不买"], "duration_s": 300}, headers=auth)
    assert opened.status_code == 201, opened.json
    poll, (yes, no) = opened.json, [o["id"] for o in opened.json["options"]]
    voter = login("voter-1")
    # and a viewer votes
    voted = client.post(f"{API}/live/polls/{poll['id']}/vote", json={"option_id": yes}, headers=voter)
    assert voted.status_code == 200 and voted.json["my_vote"] == yes and voted.json["total"] == 1
    # then a second vote, an option of nothing, are refused
    again = client.post(f"{API}/live/polls/{poll['id']}/vote", json={"option_id": no}, headers=voter)
    assert again.status_code == 409 and again.json["error"]["code"] == "already_voted"
    wrong = client.post(f"{API}/live/polls/{poll['id']}/vote", json={"option_id": 99_999}, headers=login("v2"))
    assert wrong.status_code == 404 and wrong.json["error"]["code"] == "unknown_option"
    # and the results are on the session's poll list and on the dashboard
    listed = client.get(f"{API}/live/sessions/{sid}/polls", headers=voter).json["polls"]
    assert listed[0]["my_vote"] == yes and [o["votes"] for o in listed[0]["options"]] == [1, 0]
    assert board(client, auth, sid)["polls"][0]["total"] == 1
    # when the creator closes it, a late vote is refused
    closed = client.post(f"{API}/creator/live/polls/{poll['id']}/close", headers=auth)
    assert closed.status_code == 200 and closed.json["closed"] is True
    late = client.post(f"{API}/live/polls/{poll['id']}/vote", json={"option_id": no}, headers=login("v3"))
    assert late.status_code == 409 and late.json["error"]["code"] == "poll_closed"
    assert rows() == (1, 1)


@pytest.mark.parametrize("body, status, code", [
    ({"question": "Q", "options": ["A"]}, 400, "invalid_request"),
    ({"question": "Q", "options": ["A", "A"]}, 400, "duplicate_option"),
    ({"question": " ", "options": ["A", "B"]}, 400, "invalid_request"),
    ({"question": "Q", "options": ["A", "B"], "duration_s": 1}, 400, "invalid_request"),
    ({"question": "Q", "options": ["A", "B"], "extra": 1}, 400, "invalid_request"),
])
def test_a_bad_poll_writes_nothing(client, host, body, status, code):
    auth, _, sid = host
    resp = client.post(f"{API}/creator/live/sessions/{sid}/polls", json=body, headers=auth)
    assert resp.status_code == status and resp.json["error"]["code"] == code
    assert rows() == (0, 0)


def test_no_poll_on_a_session_that_is_not_live(client, host):
    auth, creator, sid = host
    planned = live_session(fresh(creator))
    resp = client.post(f"{API}/creator/live/sessions/{planned.id}/polls",
                       json={"question": "Q", "options": ["A", "B"]}, headers=auth)
    assert resp.status_code == 409 and resp.json["error"]["code"] == "session_not_live"
    assert rows() == (0, 0)
