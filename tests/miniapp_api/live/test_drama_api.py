"""The short-drama routes through the real HTTP API: a creator builds a series, episodes with
products and live links, edits them; the mini-program reads the series without a login and
reports plays and click-throughs on /api/v1/track; the creator reads the drama funnel."""

from __future__ import annotations

import datetime as dt

import pytest

from models.db import db
from models.live import LiveSession
from models.network import Creator
from tests.factories import live_session_row
from tests.miniapp_api.asserts import assert_error

API = "/api/v1"
D = f"{API}/creator/drama"


@pytest.fixture
def me(client, login):  # noqa: ANN001, ANN201
    """A logged-in creator: auth headers, code and row."""
    auth = login("drama-maker")
    code = client.post(f"{API}/creator/join", json={"name": "林小满"}, headers=auth).json["code"]
    with db.connection_context():
        return {"auth": auth, "code": code, "creator": Creator.get(Creator.code == code)}


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=5, price=9_900, code="MASK-1")


def new_series(client, me, title: str = "霸总的秘密") -> dict:  # noqa: ANN001
    resp = client.post(f"{D}/series", json={"title": title, "cover_url": "https://cdn.example.com/c.jpg"},
                       headers=me["auth"])
    assert resp.status_code == 201, resp.json
    return resp.json


def new_episode(client, me, series_id: int, **body) -> dict:  # noqa: ANN001, ANN003
    body = {"number": 1, "title": "第1集", "video_url": "https://cdn.example.com/1.mp4", **body}
    resp = client.post(f"{D}/series/{series_id}/episodes", json=body, headers=me["auth"])
    assert resp.status_code == 201, resp.json
    return resp.json


def test_a_creator_builds_a_series_and_the_mini_program_reads_it(client, me, sku, settings):
    # given a session of the creator planned for 2026-... in UTC
    session = live_session_row(me["creator"], title="番外直播")
    with db.connection_context():
        planned = LiveSession.get_by_id(session).scheduled_at
    # when the creator makes a series with a placement episode and a cliffhanger
    series = new_series(client, me)
    first = new_episode(client, me, series["id"], sku_codes=[sku.code],
                        link={"kind": "placement", "session_id": session})
    new_episode(client, me, series["id"], number=2, title="第2集", link={"kind": "cliffhanger", "session_id": session})
    # then the public page (no login) lists both, with the product and the live link in both time zones
    page = client.get(f"{API}/drama/series/{series['id']}")
    assert page.status_code == 200
    body = page.json
    assert (body["title"], body["creator_code"], [e["number"] for e in body["episodes"]]) == \
        ("霸总的秘密", me["code"], [1, 2])
    assert body["episodes"][0] == first
    assert first["products"] == [{"sku": "MASK-1", "name": sku.name, "retail_price_fen": 9_900}]
    link = first["link"]
    assert (link["kind"], link["session_id"], link["state"], link["session_title"]) == \
        ("placement", session, "scheduled", "番外直播")
    assert link["starts_at"] == planned.isoformat() + "Z"
    local = dt.datetime.fromisoformat(link["starts_at_local"])
    assert local.utcoffset() == dt.timedelta(hours=8) and local.replace(tzinfo=None) - dt.timedelta(hours=8) == planned
    assert body["episodes"][1]["link"]["call_to_action"] == "想知道结局？来直播间，主播为你揭晓"
    # and the creator's list counts the episodes
    listed = client.get(f"{D}/series", headers=me["auth"]).json
    assert [(s["id"], s["episodes"]) for s in listed["series"]] == [(series["id"], 2)]
    assert listed["next_before_id"] is None


def test_patch_changes_only_the_fields_sent(client, me, sku):
    series = new_series(client, me)
    session = live_session_row(me["creator"])
    ep = new_episode(client, me, series["id"], sku_codes=[sku.code], link={"kind": "after_show", "session_id": session})
    # when only the title is sent
    resp = client.patch(f"{D}/episodes/{ep['id']}", json={"title": "大结局"}, headers=me["auth"])
    # then the rest stays
    assert resp.status_code == 200, resp.json
    assert (resp.json["title"], resp.json["video_url"], resp.json["link"], resp.json["products"]) == \
        ("大结局", ep["video_url"], ep["link"], ep["products"])
    # and "link": null removes the link, an empty list the products
    resp = client.patch(f"{D}/episodes/{ep['id']}", json={"link": None, "sku_codes": []}, headers=me["auth"])
    assert (resp.json["link"], resp.json["products"], resp.json["title"]) == (None, [], "大结局")
    # and the series' title changes alone
    resp = client.patch(f"{D}/series/{series['id']}", json={"title": "新剧名"}, headers=me["auth"])
    assert (resp.json["title"], resp.json["cover_url"]) == ("新剧名", series["cover_url"])
    # but a null for a field that cannot be removed is refused (leave it out to keep it)
    for url, body in ((f"{D}/series/{series['id']}", {"title": None}),
                      (f"{D}/episodes/{ep['id']}", {"video_url": None})):
        assert_error(client.patch(url, json=body, headers=me["auth"]), 400, "invalid_request")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"video_url": "http://cdn.example.com/1.mp4"}, 400, "invalid_request"),
    ({"title": "   "}, 400, "invalid_request"),
    ({"sku_codes": ["NOPE"]}, 404, "unknown_sku"),
    ({"link": {"kind": "placement", "session_id": "SESSION"}}, 400, "placement_needs_products"),
    ({"link": {"kind": "after_show", "session_id": "ENDED"}}, 400, "live_closed"),
    ({"link": {"kind": "after_show", "session_id": "OTHER"}}, 400, "session_of_another_creator"),
    ({"link": {"kind": "after_show", "session_id": 4_000_000}}, 404, "live_not_found"),
    ({"number": 1}, 409, "episode_exists"),
])
def test_a_bad_episode_gets_a_clear_error_and_writes_nothing(client, me, body, status, code):
    # given a series with an episode 1 and sessions to point at
    from tests.factories import creator
    sessions = {"SESSION": live_session_row(me["creator"]), "ENDED": live_session_row(me["creator"], state="ended"),
                "OTHER": live_session_row(creator())}
    series = new_series(client, me)
    new_episode(client, me, series["id"])
    if isinstance(body.get("link", {}).get("session_id"), str):
        body["link"]["session_id"] = sessions[body["link"]["session_id"]]
    full = {"number": 2, "title": "第2集", "video_url": "https://cdn.example.com/2.mp4", **body}
    # when the bad episode is posted
    resp = client.post(f"{D}/series/{series['id']}/episodes", json=full, headers=me["auth"])
    # then the error names the rule and the series still has one episode
    assert_error(resp, status, code)
    assert len(client.get(f"{D}/series/{series['id']}", headers=me["auth"]).json["episodes"]) == 1


def test_another_creators_series_is_not_found_and_strangers_are_refused(client, me, login):
    series = new_series(client, me)
    ep = new_episode(client, me, series["id"])
    other = login("someone-else")
    # a shopper who is not a creator cannot make a series
    assert_error(client.post(f"{D}/series", json={"title": "x"}, headers=other), 404, "not_a_creator")
    client.post(f"{API}/creator/join", json={}, headers=other)
    # and another creator finds neither the series nor the episode
    assert_error(client.get(f"{D}/series/{series['id']}", headers=other), 404, "series_not_found")
    assert_error(client.patch(f"{D}/episodes/{ep['id']}", json={"title": "x"}, headers=other), 404,
                 "episode_not_found")
    # and without a login there is no creator route
    assert client.get(f"{D}/series").status_code == 401
    # and a missing series is a 404 on the public page
    assert_error(client.get(f"{API}/drama/series/999999"), 404, "series_not_found")


def test_plays_and_clicks_through_track_feed_the_creator_funnel(client, me, sku, login, fake_pay):
    # given an episode linked to the creator's live session
    session = live_session_row(me["creator"], state="live")
    series = new_series(client, me)
    ep = new_episode(client, me, series["id"], sku_codes=[sku.code], link={"kind": "placement", "session_id": session})
    viewer = login("viewer-1")
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    # when a viewer plays it, clicks through and enters the live room
    ref = str(ep["id"])
    events = [{"id": "v1-play", "creator": me["code"], "type": "drama_play", "ref": ref, "count": 3, "at": at},
              {"id": "v1-click", "creator": me["code"], "type": "drama_click", "ref": ref, "at": at},
              {"id": "v1-entry", "creator": me["code"], "type": "live_entry", "ref": str(session), "at": at}]
    resp = client.post(f"{API}/track", json={"events": events}, headers=viewer)
    assert resp.json == {"accepted": 3, "duplicates": 0}
    # and buys in the live room
    from tests.factories import api_buy
    api_buy(client, fake_pay, viewer, sku, ref=me["code"], live=session)
    # then the creator's drama funnel shows the whole path, in total and for the series
    funnel = client.get(f"{D}/funnel", headers=me["auth"]).json
    expected = {"plays": 3, "clicks": 1, "live_entries": 1, "orders": 1, "gmv_fen": 9_900, "sessions": 1,
                "click_bp": 3_333, "order_bp": 10_000}
    assert funnel["total"] == expected
    assert funnel["series"] == [{"series_id": series["id"], "title": series["title"], **expected}]
    # and a drama event naming another creator's episode is refused whole
    bad = [{"id": "v1-bad", "creator": me["code"], "type": "drama_play", "ref": "987654", "at": at}]
    assert_error(client.post(f"{API}/track", json={"events": bad}, headers=viewer), 404, "unknown_episode")
