"""The reservation lottery through the real HTTP API: the public lottery of a session before
and after the draw, the public reservation list paged by id, the lottery on the session page,
and a lottery with more prizes than reservations refused at scheduling (400, nothing written)."""

from __future__ import annotations

import datetime as dt
import hashlib

from models.db import db, utcnow
from models.live import LiveSession
from models.lottery import Lottery
from tasks import lottery as lottery_jobs
from tests.factories import LOTTERY_START, lottery_session, reserve_many
from tests.miniapp_api.asserts import assert_error

API = "/api/v1/live/sessions"
AFTER_START = LOTTERY_START + dt.timedelta(seconds=10)


def test_before_the_draw_only_the_seed_hash_is_public(client, shop):
    # given a lottery with 2 reservations
    session, prize = lottery_session(shop, threshold=3, prizes=1)
    reserve_many(session.id, 2)
    # when anyone reads it (no login)
    resp = client.get(f"{API}/{session.id}/lottery")
    # then terms, prize, seed hash and the count so far; no seed, no winners
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["threshold"], body["prizes"], body["state"], body["reservations"]) == (3, 1, "pending", 2)
    assert body["prize"] == {"sku": prize.code, "name": prize.name} and len(body["seed_hash"]) == 64
    assert body["seed"] is None and body["list_hash"] is None and body["winners"] == []


def test_after_the_draw_the_seed_list_hash_and_winners_are_public(client, shop):
    # given a drawn lottery
    session, _ = lottery_session(shop, threshold=3, prizes=2)
    ids = reserve_many(session.id, 4)
    lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    # when read / then the seed opens the published hash and the list hash is the documented one
    body = client.get(f"{API}/{session.id}/lottery").json
    assert body["state"] == "drawn" and body["reservations"] == 4 and len(body["winners"]) == 2
    assert hashlib.sha256(bytes.fromhex(body["seed"])).hexdigest() == body["seed_hash"]
    assert body["list_hash"] == hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()
    assert set(body["winners"]) <= set(ids) and body["drawn_at"].endswith("Z")


def test_below_the_threshold_the_page_says_there_was_no_draw(client, shop):
    session, _ = lottery_session(shop, threshold=5, prizes=1)
    reserve_many(session.id, 2)
    lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    body = client.get(f"{API}/{session.id}/lottery").json
    assert (body["state"], body["reservations"], body["winners"]) == ("below_threshold", 2, [])
    # and the session page carries the same summary
    page = client.get(f"{API}/{session.id}")
    assert page.status_code == 200, page.json
    assert page.json["lottery"]["state"] == "below_threshold"


def test_the_reservation_list_pages_by_id(client, shop):
    # given 5 reservations
    session, _ = lottery_session(shop)
    ids = reserve_many(session.id, 5)
    # when read 2 at a time, following next_after
    got, after, pages = [], 0, 0
    while after is not None:
        resp = client.get(f"{API}/{session.id}/lottery/reservations", query_string={"after": after, "limit": 2})
        assert resp.status_code == 200, resp.json
        got += resp.json["ids"]
        after, pages = resp.json["next_after"], pages + 1
    # then every id once, ascending, in 3 pages
    assert got == ids and pages == 3


def test_bad_pages_and_unknown_lotteries_are_clear_errors(client, shop):
    session, _ = lottery_session(shop)
    assert_error(client.get(f"{API}/{session.id}/lottery/reservations?limit=0"), 400)
    assert_error(client.get(f"{API}/{session.id}/lottery/reservations?limit=1001"), 400)
    assert_error(client.get(f"{API}/{session.id}/lottery/reservations?after=-1"), 400)
    assert_error(client.get(f"{API}/{session.id + 1}/lottery"), 404, "lottery_not_found")
    assert_error(client.get(f"{API}/{session.id + 1}/lottery/reservations"), 404, "lottery_not_found")


def test_a_lottery_with_more_prizes_than_reservations_is_refused_at_scheduling(client, login, shop):
    # given a creator and a prize SKU
    prize = shop.card_sku(keys=20)
    auth = login("host")
    assert client.post("/api/v1/creator/join", json={"name": "Host"}, headers=auth).status_code in (200, 201)
    start = (utcnow() + LOTTERY_START).isoformat() + "Z"
    # when they schedule a session whose lottery has more prizes than its threshold
    resp = client.post("/api/v1/creator/live/sessions", headers=auth, json={
        "title": "抽奖", "scheduled_at": start, "lottery": {"threshold": 5, "prizes": 10, "prize_sku": prize.code}})
    # then 400 with the reason, and no session nor lottery written
    assert_error(resp, 400, "lottery_prizes_over_threshold")
    with db.connection_context():
        assert LiveSession.select().count() == 0 and Lottery.select().count() == 0
    # and the same with sane terms is scheduled, its lottery public at once
    ok = client.post("/api/v1/creator/live/sessions", headers=auth, json={
        "title": "抽奖", "scheduled_at": start, "lottery": {"threshold": 10, "prizes": 5, "prize_sku": prize.code}})
    assert ok.status_code == 201, ok.json
    assert client.get(f"{API}/{ok.json['id']}/lottery").json["state"] == "pending"
