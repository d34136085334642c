"""Team assist through the real HTTP API: starting, the public progress page, friends helping
on entering the live room, every refusal (a clear 4xx, nothing written) and the share poster."""

from __future__ import annotations

import datetime as dt

import pytest

from models import orders
from models.assist import Assist, AssistHelp, AssistQuota
from models.db import db, utcnow
from models.live import LiveSession
from models.orders import Order
from tests.factories import api_order, api_pay, assist_session
from tests.miniapp_api.asserts import assert_error

API = "/api/v1/live"


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=20, price=9_900, code="CARD-A")


def start(client, auth, session_id: int, sku: str = "CARD-A", status: int = 201) -> dict:  # noqa: ANN001
    resp = client.post(f"{API}/sessions/{session_id}/assists", json={"sku": sku}, headers=auth)
    assert resp.status_code == status, resp.json
    return resp.json


def help_(client, auth, token: str):  # noqa: ANN001, ANN201
    return client.post(f"{API}/assists/{token}/help", headers=auth)


def written() -> tuple[int, int, int]:
    with db.connection_context():
        return Assist.select().count(), AssistHelp.select().count(), AssistQuota.select().count()


def test_three_friends_unlock_the_price_and_the_starter_sees_it(client, login, sku):
    # given a live session selling a 99-yuan product, unlocked at 69 by 3 friends
    session_id, _ = assist_session(sku)
    ann = login("ann")
    # when ann starts an assist (twice: the second gives the same one back)
    mine = start(client, ann, session_id)
    assert start(client, ann, session_id, status=200)["token"] == mine["token"]
    assert mine["share_path"] == f"pages/live/assist?token={mine['token']}"
    assert (mine["helpers"], mine["helpers_needed"], mine["price_fen"], mine["usable"]) == (0, 3, 6_900, False)
    # and three friends who entered the live room help
    results = [help_(client, login(f), mine["token"]).json for f in ("ben", "carl", "dora")]
    # then the third unlocked it, and ann's list shows it usable at 69 yuan
    assert [r["helpers"] for r in results] == [1, 2, 3]
    assert [r["unlocked"] for r in results] == [False, False, True]
    listed = client.get(f"{API}/sessions/{session_id}/assists", headers=ann).json["assists"]
    assert len(listed) == 1 and listed[0]["usable"] and listed[0]["unlocked_until"] == results[2]["unlocked_until"]
    # and the helpers were recorded with the address the request came from
    with db.connection_context():
        assert sorted(h.ip for h in AssistHelp.select()) == ["127.0.0.1"] * 3


def test_the_public_progress_names_nobody_and_needs_no_login(client, login, sku):
    # given ann's assist with one helper
    session_id, _ = assist_session(sku)
    mine = start(client, login("ann"), session_id)
    help_(client, login("ben"), mine["token"])
    # when anyone opens the link
    resp = client.get(f"{API}/assists/{mine['token']}")
    # then they see the product, the goal and the progress, and nothing about ann or ben
    assert resp.status_code == 200
    body = resp.json
    assert (body["sku"], body["retail_fen"], body["price_fen"]) == ("CARD-A", 9_900, 6_900)
    assert (body["helpers"], body["helpers_needed"], body["accepting_help"]) == (1, 3, True)
    assert set(body) == {"session_id", "session_state", "session_title", "sku", "product", "retail_fen",
                         "price_fen", "helpers", "helpers_needed", "new_users_only", "unlocked",
                         "unlocked_until", "usable", "accepting_help"}
    assert "ann" not in resp.get_data(as_text=True) and "ben" not in resp.get_data(as_text=True)


def test_refusals_are_clear_and_write_nothing(client, login, sku):
    # given ann's assist in a live session
    session_id, _ = assist_session(sku)
    ann, ben = login("ann"), login("ben")
    token = start(client, ann, session_id)["token"]
    assert help_(client, ben, token).status_code == 200
    before = written()
    # when ann helps herself, ben helps twice, someone uses a made-up or malformed token,
    # or helps without logging in
    assert_error(help_(client, ann, token), 403, "self_assist")
    assert_error(help_(client, ben, token), 409, "already_helped")
    assert_error(help_(client, ben, "A" * 22), 404, "assist_not_found")
    assert_error(client.get(f"{API}/assists/{'A' * 22}"), 404, "assist_not_found")
    assert_error(help_(client, ben, "bad token!"), 400)
    assert_error(help_(client, {}, token), 401)
    # then nothing more was written
    assert written() == before


def test_closed_and_unknown_sessions_take_no_assist(client, login, sku):
    # given a session that ended, and one not yet live
    ended, _ = assist_session(sku)
    scheduled, _ = assist_session(sku, state="scheduled")
    with db.connection_context():
        LiveSession.update(state="ended", ended_at=utcnow()).where(LiveSession.id == ended).execute()
    ann = login("ann")
    # when ann starts assists on them, or on an unknown session or product
    assert_error(client.post(f"{API}/sessions/{ended}/assists", json={"sku": "CARD-A"}, headers=ann),
                 409, "session_closed")
    assert_error(client.post(f"{API}/sessions/999999/assists", json={"sku": "CARD-A"}, headers=ann),
                 404, "live_not_found")
    assert_error(client.post(f"{API}/sessions/{scheduled}/assists", json={"sku": "NOPE"}, headers=ann),
                 404, "not_pinned")
    assert_error(client.post(f"{API}/sessions/{scheduled}/assists", json={"sku": 5}, headers=ann), 400)
    assert written() == (0, 0, 0)
    # then a scheduled session takes the assist, but friends count only once it is live
    token = start(client, ann, scheduled)["token"]
    assert_error(help_(client, login("ben"), token), 409, "session_not_live")
    assert written() == (1, 0, 0)


def test_a_second_account_with_the_same_unionid_is_the_same_person(client, fake_wechat, sku):
    # given ann logged in on the mini-program with her unionid, and her second mini-program account
    session_id, _ = assist_session(sku)
    ann = _login_with_unionid(client, fake_wechat, "ann", "union-ann")
    ann_again = _login_with_unionid(client, fake_wechat, "ann-other-app", "union-ann")
    token = start(client, ann, session_id)["token"]
    # when the second account helps, then it is refused
    assert_error(help_(client, ann_again, token), 403, "same_person")
    # and a friend with another unionid counts
    friend = _login_with_unionid(client, fake_wechat, "ben", "union-ben")
    assert help_(client, friend, token).json["helpers"] == 1


def test_a_friend_helps_at_most_the_limit_per_session(client, login, sku):
    # given four shoppers' assists in one session (limit LIVE_ASSIST_MAX_HELPS_PER_SESSION = 3)
    session_id, _ = assist_session(sku)
    tokens = [start(client, login(f"s{i}"), session_id)["token"] for i in range(4)]
    friend = login("friend")
    # when the same friend helps all four
    statuses = [help_(client, friend, t).status_code for t in tokens[:3]]
    # then the fourth is refused
    assert statuses == [200, 200, 200]
    assert_error(help_(client, friend, tokens[3]), 409, "help_limit_reached")
    assert client.get(f"{API}/assists/{tokens[3]}").json["helpers"] == 0


def test_the_share_poster_is_a_png(client, login, sku):
    # given ann's assist
    session_id, _ = assist_session(sku)
    token = start(client, login("ann"), session_id)["token"]
    # when the poster is fetched (twice: the second from the cache)
    first = client.get(f"{API}/assists/{token}/poster.png")
    second = client.get(f"{API}/assists/{token}/poster.png")
    # then it is a PNG, the same both times
    assert first.status_code == 200 and first.mimetype == "image/png"
    assert first.data.startswith(b"\x89PNG") and first.data == second.data
    assert_error(client.get(f"{API}/assists/{'A' * 22}/poster.png"), 404, "assist_not_found")


def test_the_unlocked_price_buys_one_unit_through_the_order_route(client, login, fake_pay, sku):
    # given ann's assist unlocked by three friends in a live session (99 yuan, 69 unlocked)
    session_id, _ = assist_session(sku)
    ann = login("ann")
    token = start(client, ann, session_id)["token"]
    for friend in ("ben", "carl", "dora"):
        assert help_(client, login(friend), token).status_code == 200
    # when ann orders the product in the live room, lets the order expire, and orders again
    first = api_order(client, ann, sku, live=session_id)
    with db.connection_context():
        expires_at = Order.get_by_id(first["id"]).expires_at
        assert orders.expire_due(now=expires_at + dt.timedelta(seconds=1)) == 1
    second = api_order(client, ann, sku, live=session_id)
    api_pay(client, fake_pay, ann, second)
    # then both orders were at the unlocked price: the expired one gave the assist back
    assert (first["amount_fen"], second["amount_fen"]) == (6_900, 6_900)
    listed = client.get(f"{API}/sessions/{session_id}/assists", headers=ann).json["assists"]
    assert (listed[0]["order_id"], listed[0]["usable"]) == (second["id"], False)
    # and a third order pays the full price: one unit per assist
    assert api_order(client, ann, sku, live=session_id)["amount_fen"] == 9_900


def _login_with_unionid(client, fake_wechat, openid: str, unionid: str) -> dict:  # noqa: ANN001
    code = f"code-{openid}-{unionid}"
    fake_wechat.register_code(code, openid, unionid=unionid)
    resp = client.post("/api/v1/auth/login", json={"code": code})
    assert resp.status_code == 200, resp.json
    return {"Authorization": f"Bearer {resp.json['token']}"}

