"""The live-session routes through the real app: a creator schedules (times typed in
LIVE_TIMEZONE or with an offset), lists with reservation counts, reschedules, cancels, starts
and ends sessions; anyone reads a session's public page, a login adds whether I reserved. Bad
input is a 4xx with the JSON error shape and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from models import reservations
from models.db import db, utcnow
from models.live import LivePin, LiveSession
from tests.factories import buyer, planned_session

SESSIONS = "/api/v1/creator/live/sessions"


@pytest.fixture
def host(client, login):  # noqa: ANN001, ANN201
    """A logged-in creator: (auth headers, creator code)."""
    auth = login("host-1")
    resp = client.post("/api/v1/creator/join", json={"name": "小美"}, headers=auth)
    assert resp.status_code == 200, resp.json
    return auth


def shanghai_tomorrow(hour: int = 20) -> dt.datetime:
    """Tomorrow at `hour`:00 on a Shanghai wall clock, naive."""
    local = utcnow() + dt.timedelta(hours=8)
    return dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(hour, 0))


def count_rows() -> tuple[int, int]:
    with db.connection_context():
        return LiveSession.select().count(), LivePin.select().count()


def test_schedule_reads_a_naive_time_in_the_live_timezone(client, host, shop):
    # given a product on sale
    card, tea = shop.card_sku(keys=10, price=1990), shop.card_sku(keys=10, price=9900)
    start = shanghai_tomorrow(20)
    body = {"title": "周末福利专场", "scheduled_at": start.isoformat(), "expected_minutes": 90,
            "cover_url": "https://cdn.example.com/c.jpg",
            "pins": [{"sku": tea.code, "slot_at": (start + dt.timedelta(minutes=10)).isoformat(),
                      "ladder": {"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]}},
                     {"sku": card.code}]}
    # when the creator schedules a session at 20:00 without an offset
    resp = client.post(SESSIONS, json=body, headers=host)
    # then it is stored at 12:00 UTC and shown at 20:00 in Shanghai, with both products pinned
    assert resp.status_code == 201, resp.json
    out = resp.json
    assert out["state"] == "scheduled" and out["started_at"] is None and out["timezone"] == "Asia/Shanghai"
    assert out["scheduled_at"] == (start - dt.timedelta(hours=8)).isoformat() + "Z"
    assert out["scheduled_at_local"] == start.strftime("%Y-%m-%d %H:%M")
    assert [p["sku"] for p in out["pins"]] == [tea.code, card.code]
    assert out["pins"][0]["slot_at_local"] == (start + dt.timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M")
    assert out["reservations"] == 0 and out["plan_version"] == 0


def test_a_time_with_an_offset_is_taken_as_given(client, host):
    # given 20:00 at UTC+0 (not Shanghai)
    start = (utcnow() + dt.timedelta(days=1)).replace(hour=20, minute=0, second=0, microsecond=0)
    # when it is sent with its offset
    resp = client.post(SESSIONS, json={"title": "海外场", "scheduled_at": start.isoformat() + "+00:00"},
                       headers=host)
    # then it is 20:00 UTC, 04:00 the next day in Shanghai
    assert resp.status_code == 201, resp.json
    assert resp.json["scheduled_at"] == start.isoformat() + "Z"
    assert resp.json["scheduled_at_local"].endswith("04:00")


@pytest.mark.parametrize("change, status, code", [
    ({"scheduled_at": "2020-01-01T20:00:00+08:00"}, 400, "live_start_past"),
    ({"expected_minutes": 0}, 400, "invalid_request"),
    ({"cover_url": "http://cdn.example.com/c.jpg"}, 400, "invalid_request"),
    ({"pins": [{"sku": "NOPE"}]}, 400, "unknown_sku"),
    ({"pins": [{"sku": "CARD-1"}, {"sku": "CARD-1"}]}, 400, "duplicate_pin"),
    ({"pins": [{"sku": "CARD-1", "ladder": {"tiers": [{"units": 5, "price_fen": -1}]}}]}, 400, "negative_price"),
    ({"pins": [{"sku": "CARD-1", "ladder": {"tiers": [{"units": 5, "price_fen": 100},
                                                      {"first": 3, "last": 9, "price_fen": 50}]}}]},
     400, "overlapping_tiers"),
    ({"lottery": {"threshold": 5, "prizes": 9, "prize_sku": "CARD-1"}}, 400, "lottery_prizes_over_threshold"),
])
def test_bad_plans_are_refused_and_nothing_is_written(client, host, shop, change, status, code):
    # given a product on sale
    shop.card_sku(keys=10, price=1990)
    body = {"title": "新品首发", "scheduled_at": shanghai_tomorrow().isoformat(), **change}
    # when a plan with one bad field is sent
    resp = client.post(SESSIONS, json=body, headers=host)
    # then it is refused with the rule's code, and nothing was written
    assert resp.status_code == status and resp.json["error"]["code"] == code, resp.json
    assert count_rows() == (0, 0)


def test_only_creators_schedule(client, login):
    # when a shopper who has not joined schedules a session
    resp = client.post(SESSIONS, json={"title": "x", "scheduled_at": shanghai_tomorrow().isoformat()},
                       headers=login("shopper"))
    # then 404 not_a_creator
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_a_creator"
    assert client.get(SESSIONS).status_code == 401


def test_my_sessions_list_newest_first_with_reservation_counts(client, host):
    # given two scheduled sessions, the first reserved by two fans
    first = client.post(SESSIONS, json={"title": "一", "scheduled_at": shanghai_tomorrow(19).isoformat()},
                        headers=host).json["id"]
    second = client.post(SESSIONS, json={"title": "二", "scheduled_at": shanghai_tomorrow(21).isoformat()},
                         headers=host).json["id"]
    with db.connection_context():
        for fan in ("fan-1", "fan-2"):
            reservations.reserve(buyer(fan), first, "miniapp")
    # when the creator lists them one per page
    page1 = client.get(f"{SESSIONS}?limit=1", headers=host).json
    page2 = client.get(f"{SESSIONS}?limit=1&before_id={page1['next_before_id']}", headers=host).json
    # then newest first, each with its reservation count
    assert [(s["id"], s["reservations"]) for s in page1["sessions"] + page2["sessions"]] == [(second, 0), (first, 2)]


def test_reschedule_cancel_start_and_end(client, host, rt, run_jobs):
    # given two scheduled sessions
    a = client.post(SESSIONS, json={"title": "甲", "scheduled_at": shanghai_tomorrow(19).isoformat()},
                    headers=host).json["id"]
    b = client.post(SESSIONS, json={"title": "乙", "scheduled_at": shanghai_tomorrow(20).isoformat()},
                    headers=host).json["id"]
    # when the first is moved to 21:00 Shanghai time
    moved = client.post(f"{SESSIONS}/{a}/reschedule", json={"scheduled_at": shanghai_tomorrow(21).isoformat()},
                        headers=host)
    # then it starts then, its plan version grown
    assert moved.status_code == 200, moved.json
    assert moved.json["scheduled_at_local"].endswith("21:00") and moved.json["plan_version"] == 1
    # when the second is cancelled, and cancelled again
    cancelled = client.post(f"{SESSIONS}/{b}/cancel", json={"reason": "临时有事"}, headers=host)
    again = client.post(f"{SESSIONS}/{b}/cancel", json={}, headers=host)
    assert cancelled.json["state"] == again.json["state"] == "cancelled" and again.json["plan_version"] == 1
    # when the first goes live and ends
    started = client.post(f"{SESSIONS}/{a}/start", headers=host)
    assert started.status_code == 200 and started.json["state"] == "live" and started.json["started_at"]
    ended = client.post(f"/api/v1/creator/live/{a}/end", headers=host)
    # then ending queued the settlement of its orders (as before scheduling)
    assert ended.status_code == 200 and ended.json["state"] == "ended" and ended.json["settlement_queued"]
    assert rt.queue.count == 1 and run_jobs() == 1
    # and what a state forbids is a 409 naming the state
    for url, body, code in ((f"{SESSIONS}/{b}/start", None, "live_cancelled"),
                            (f"{SESSIONS}/{a}/reschedule", {"scheduled_at": shanghai_tomorrow().isoformat()},
                             "live_ended"),
                            (f"{SESSIONS}/{a}/cancel", {}, "live_ended")):
        resp = client.post(url, json=body, headers=host)
        assert resp.status_code == 409 and resp.json["error"]["code"] == code, (url, resp.json)


def test_ending_a_scheduled_session_is_refused(client, host):
    # given a scheduled session
    sid = client.post(SESSIONS, json={"title": "甲", "scheduled_at": shanghai_tomorrow().isoformat()},
                      headers=host).json["id"]
    # when it is ended before it went live
    resp = client.post(f"/api/v1/creator/live/{sid}/end", headers=host)
    # then 409 live_not_started (cancel it instead), and it stays scheduled
    assert resp.status_code == 409 and resp.json["error"]["code"] == "live_not_started"
    with db.connection_context():
        assert LiveSession.get_by_id(sid).state == "scheduled"


def test_another_creators_session_is_not_found(client, host, login):
    # given a session of another creator
    other = login("host-2")
    client.post("/api/v1/creator/join", json={}, headers=other)
    sid = client.post(SESSIONS, json={"title": "别人的", "scheduled_at": shanghai_tomorrow().isoformat()},
                      headers=other).json["id"]
    # when this creator acts on it
    for url, body in ((f"{SESSIONS}/{sid}/start", None), (f"{SESSIONS}/{sid}/cancel", {}),
                      (f"{SESSIONS}/{sid}/reschedule", {"scheduled_at": shanghai_tomorrow(22).isoformat()}),
                      (f"/api/v1/creator/live/{sid}/end", None)):
        resp = client.post(url, json=body, headers=host)
        # then it is not found, as a missing one
        assert resp.status_code == 404 and resp.json["error"]["code"] == "live_not_found"


def test_the_public_page_shows_the_session_and_what_is_mine(client, login, shop):
    # given a scheduled session with a laddered product and a plain one, reserved by a fan
    card, tea = shop.card_sku(keys=10, price=1990), shop.card_sku(keys=10, price=9900)
    from tests.factories import creator

    host = creator(name="小美")
    sid = planned_session(host, skus=(tea.code, card.code))
    with db.connection_context():
        from models import live, live_prices

        pin = live.pins_of(sid)[0]
        live_prices.save_ladder(pin, live_prices.parse_ladder(
            {"tiers": [{"units": 2, "price_fen": 990}, {"units": 3, "price_fen": 1990}]}, tea.retail_price_fen))
        reservations.reserve(buyer("fan-1"), sid, "miniapp")
    # when an anonymous visitor and the fan open the page
    anonymous = client.get(f"/api/v1/live/sessions/{sid}")
    mine = client.get(f"/api/v1/live/sessions/{sid}", headers=login("fan-1"))
    # then both see the session, its creator, the pins with the current tier, and the count
    assert anonymous.status_code == mine.status_code == 200, anonymous.json
    page = anonymous.json
    assert page["creator"] == {"name": "小美", "code": host.code} and page["state"] == "scheduled"
    assert [p["sku"] for p in page["pins"]] == [tea.code, card.code]
    assert page["pins"][0]["offer"] == {"price_fen": 990, "tier": 1, "left_at_tier": 2, "left_total": 5,
                                        "sold_out": False}
    assert page["pins"][1]["offer"] is None and page["reservations"] == 1
    assert page["lottery"] is None and page["polls"] == []
    # and only the fan's page says it is reserved
    assert page["reserved"] is None and mine.json["reserved"] is True
    assert client.get(f"/api/v1/live/sessions/{sid}", headers=login("fan-2")).json["reserved"] is False


def test_the_public_page_of_an_unknown_session_and_a_bad_token(client):
    # when a missing session is asked for, or with a token that is no token
    missing = client.get("/api/v1/live/sessions/999")
    bad = client.get("/api/v1/live/sessions/999", headers={"Authorization": "Bearer nonsense"})
    # then 404 live_not_found, and 401 for the bad token (anonymous only without one)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "live_not_found"
    assert bad.status_code == 401


def test_an_unplanned_start_still_works(client, host):
    # when the creator goes live at once
    resp = client.post("/api/v1/creator/live", json={"title": "临时开播"}, headers=host)
    # then it is live (the old answer shape)
    assert resp.status_code == 201 and resp.json["state"] == "live" and resp.json["ended_at"] is None
