"""Bad requests to the creator routes: each gets a 4xx with the JSON error shape and the exact
error code, and nothing is written (no creator, binding, price, session, withdrawal, event,
ledger entry or queued job)."""

from __future__ import annotations

import json

import pytest

from models.activity import ActivityEvent
from models.db import db
from models.live import LiveSession
from models.network import Creator, CreatorPrice
from models.settlement import Commission, Settlement
from models.withdrawals import Withdrawal
from tests.miniapp_api.asserts import assert_error, snapshot

C = "/api/v1/creator"
SKU = "CARD-A"

# Every creator route with a well-formed body (None: no body).
ROUTES = [
    ("POST", f"{C}/join", {}),
    ("POST", f"{C}/bind", {"code": "SOMECODE"}),
    ("GET", f"{C}/me", None),
    ("GET", f"{C}/balances", None),
    ("GET", f"{C}/statement", None),
    ("GET", f"{C}/statement.csv", None),
    ("GET", f"{C}/commissions", None),
    ("GET", f"{C}/team", None),
    ("GET", f"{C}/progress", None),
    ("GET", f"{C}/funnel", None),
    ("GET", f"{C}/products", None),
    ("PUT", f"{C}/prices/{SKU}", {"markup_fen": 100}),
    ("POST", f"{C}/withdrawals", {"amount_fen": 10_000, "method": "wallet"}),
    ("GET", f"{C}/withdrawals", None),
    ("POST", f"{C}/live", {"title": "live"}),
    ("POST", f"{C}/live/1/end", None),
]
TRACK = "/api/v1/track"
EVENT = {"id": "ev-1", "creator": "SOMECODE", "type": "video_play", "ref": "video-1",
         "at": "2026-01-02T03:04:05Z"}
BODY_ROUTES = [(m, p, b) for m, p, b in ROUTES if b is not None]
ids = [f"{m} {p}" for m, p, _ in ROUTES]
body_ids = [f"{m} {p}" for m, p, _ in BODY_ROUTES]


def full_snapshot(rt) -> dict:  # noqa: ANN001
    state = snapshot(rt)
    with db.connection_context():
        for model in (Creator, CreatorPrice, LiveSession, Withdrawal, ActivityEvent, Settlement, Commission):
            state[model.__name__] = model.select().count()
        state["bindings"] = sorted((c.id, c.parent_id, c.grandparent_id) for c in Creator.select())
        state["prices"] = sorted((p.creator_id, p.sku_id, p.markup_fen) for p in CreatorPrice.select())
    return state


@pytest.fixture
def world(client, login, shop):  # noqa: ANN001, ANN201
    """A SKU, a creator (Ann) with a team member, and a logged-in shopper who never joined."""
    shop.card_sku(keys=3, price=10_000, code=SKU)
    ann = login("ann")
    ann_code = client.post(f"{C}/join", json={}, headers=ann).json["code"]
    ben = login("ben")
    client.post(f"{C}/join", json={"invite_code": ann_code}, headers=ben)
    return {"ann": ann, "ben": ben, "ann_code": ann_code, "shopper": login("shopper")}


@pytest.fixture
def before(rt, world):  # noqa: ANN001, ANN201
    return full_snapshot(rt)


def send(client, method: str, path: str, body=None, headers=None, **kw):  # noqa: ANN001, ANN003, ANN201
    if body is not None:
        kw["json"] = body
    return client.open(path, method=method, headers=headers or {}, **kw)


def test_a_good_price_does_write(client, rt, world, before):
    # given the same set-up the bad requests use, a well-formed request writes (so the
    # "nothing written" checks below can fail)
    resp = send(client, "PUT", f"{C}/prices/{SKU}", {"markup_fen": 100}, world["ann"])
    assert resp.status_code == 200, resp.json
    assert full_snapshot(rt)["CreatorPrice"] == before["CreatorPrice"] + 1


# -- who is asking ----------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body", [*ROUTES, ("POST", TRACK, {"events": [EVENT]})],
                         ids=[*ids, f"POST {TRACK}"])
def test_not_logged_in_is_401(client, rt, world, before, method, path, body):
    for auth in (None, "Bearer", "Bearer not-a-token", "Basic YW5uOnB3"):
        headers = {"Authorization": auth} if auth else {}
        assert_error(send(client, method, path, body, headers), 401, "unauthorized")
    assert full_snapshot(rt) == before


@pytest.mark.parametrize("method, path, body", [r for r in ROUTES if not r[1].endswith("/join")],
                         ids=[i for i in ids if not i.endswith("/join")])
def test_a_shopper_who_has_not_joined_is_404_not_a_creator(client, rt, world, before, method, path, body):
    if path.endswith("/bind"):
        body = {"code": world["ann_code"]}
    assert_error(send(client, method, path, body, world["shopper"]), 404, "not_a_creator")
    assert full_snapshot(rt) == before


# -- the request body -------------------------------------------------------------------------

RAW_BODIES = {
    "malformed JSON": ('{"markup_fen": 1', "application/json"),
    "trailing garbage": ('{"markup_fen": 1} xyz', "application/json"),
    "empty body": ("", "application/json"),
    "JSON list": ("[{}]", "application/json"),
    "JSON string": ('"x"', "application/json"),
    "JSON string holding an object": (json.dumps(json.dumps({"code": "SOMECODE"})), "application/json"),
    "JSON number": ("1", "application/json"),
    "JSON null": ("null", "application/json"),
    "NaN literal": ('{"markup_fen": NaN}', "application/json"),
    "not UTF-8": (b'{"code": "\xff\xfe"}', "application/json"),
    "deeply nested": ("[" * 5000 + "]" * 5000, "application/json"),
    "NUL in a string": ('{"name": "A\\u0000B", "code": "AB\\u0000CD"}', "application/json"),
    "form encoded": ("markup_fen=1", "application/x-www-form-urlencoded"),
    "JSON as text/plain": ('{"markup_fen": 1}', "text/plain"),
}


@pytest.mark.parametrize("method, path, _body", [*BODY_ROUTES, ("POST", TRACK, None)],
                         ids=[*body_ids, f"POST {TRACK}"])
def test_unparseable_or_non_object_body_is_400(client, rt, world, before, method, path, _body):
    for case, (raw, content_type) in RAW_BODIES.items():
        resp = client.open(path, method=method, data=raw, content_type=content_type, headers=world["ben"])
        error = assert_error(resp, 400)
        assert error["code"] in ("invalid_json", "invalid_request"), case
    assert full_snapshot(rt) == before


WRONG_FIELDS = {
    # join
    "join: name too long": ("POST", f"{C}/join", {"name": "x" * 65}, "name"),
    "join: name as number": ("POST", f"{C}/join", {"name": 7}, "name"),
    "join: invite_code too short": ("POST", f"{C}/join", {"invite_code": "abc"}, "invite_code"),
    "join: invite_code too long": ("POST", f"{C}/join", {"invite_code": "a" * 33}, "invite_code"),
    "join: invite_code with space": ("POST", f"{C}/join", {"invite_code": "AB CD"}, "invite_code"),
    "join: invite_code non-ASCII": ("POST", f"{C}/join", {"invite_code": "星星星星"}, "invite_code"),
    "join: invite_code as number": ("POST", f"{C}/join", {"invite_code": 12345678}, "invite_code"),
    "join: via operator": ("POST", f"{C}/join", {"via": "operator"}, "via"),
    "join: via telegram": ("POST", f"{C}/join", {"via": "telegram"}, "via"),
    "join: unknown field": ("POST", f"{C}/join", {"parent_id": 1}, "parent_id"),
    # bind
    "bind: missing code": ("POST", f"{C}/bind", {}, "code"),
    "bind: code null": ("POST", f"{C}/bind", {"code": None}, "code"),
    "bind: code list": ("POST", f"{C}/bind", {"code": ["SOMECODE"]}, "code"),
    "bind: code with markup": ("POST", f"{C}/bind", {"code": "<script>"}, "code"),
    "bind: via unknown": ("POST", f"{C}/bind", {"code": "SOMECODE", "via": "x"}, "via"),
    "bind: unknown field": ("POST", f"{C}/bind", {"code": "SOMECODE", "actor": "operator"}, "actor"),
    # prices
    "price: missing markup": ("PUT", f"{C}/prices/{SKU}", {}, "markup_fen"),
    "price: markup negative": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": -1}, "markup_fen"),
    "price: markup huge": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": 10**30}, "markup_fen"),
    "price: markup -huge": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": -(10**30)}, "markup_fen"),
    "price: markup above 64 bits": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": 2**63}, "markup_fen"),
    "price: markup as string": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": "100"}, "markup_fen"),
    "price: markup as float": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": 1.5}, "markup_fen"),
    "price: markup bool": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": True}, "markup_fen"),
    "price: markup null": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": None}, "markup_fen"),
    "price: unknown field": ("PUT", f"{C}/prices/{SKU}", {"markup_fen": 1, "creator_id": 2}, "creator_id"),
    "price: sku code too long": ("PUT", f"{C}/prices/{'X' * 65}", {"markup_fen": 1}, "sku_code"),
    # withdrawals
    "withdraw: missing amount": ("POST", f"{C}/withdrawals", {"method": "wallet"}, "amount_fen"),
    "withdraw: missing method": ("POST", f"{C}/withdrawals", {"amount_fen": 10_000}, "method"),
    "withdraw: amount 0": ("POST", f"{C}/withdrawals", {"amount_fen": 0, "method": "wallet"}, "amount_fen"),
    "withdraw: amount negative": ("POST", f"{C}/withdrawals", {"amount_fen": -10_000, "method": "credit"},
                                  "amount_fen"),
    "withdraw: amount huge": ("POST", f"{C}/withdrawals", {"amount_fen": 10**30, "method": "wallet"},
                              "amount_fen"),
    "withdraw: amount 2**63": ("POST", f"{C}/withdrawals", {"amount_fen": 2**63, "method": "wallet"},
                               "amount_fen"),
    "withdraw: amount as string": ("POST", f"{C}/withdrawals", {"amount_fen": "10000", "method": "wallet"},
                                   "amount_fen"),
    "withdraw: amount as float": ("POST", f"{C}/withdrawals", {"amount_fen": 10000.5, "method": "wallet"},
                                  "amount_fen"),
    "withdraw: amount bool": ("POST", f"{C}/withdrawals", {"amount_fen": True, "method": "wallet"},
                              "amount_fen"),
    "withdraw: method bank": ("POST", f"{C}/withdrawals", {"amount_fen": 10_000, "method": "bank"}, "method"),
    "withdraw: unknown field": ("POST", f"{C}/withdrawals",
                                {"amount_fen": 10_000, "method": "wallet", "fee_fen": 0}, "fee_fen"),
    # live sessions
    "live: title too long": ("POST", f"{C}/live", {"title": "t" * 121}, "title"),
    "live: title as number": ("POST", f"{C}/live", {"title": 5}, "title"),
    "live: title null": ("POST", f"{C}/live", {"title": None}, "title"),
    "live: unknown field": ("POST", f"{C}/live", {"title": "x", "creator_id": 1}, "creator_id"),
    "live end: id 0": ("POST", f"{C}/live/0/end", None, "live_id"),
    "live end: id above 2**62": ("POST", f"{C}/live/{2**62 + 1}/end", None, "live_id"),
    "live end: id huge": ("POST", f"{C}/live/{10**30}/end", None, "live_id"),
    # tracking
    "track: no events": ("POST", TRACK, {}, "events"),
    "track: empty list": ("POST", TRACK, {"events": []}, "events"),
    "track: events not a list": ("POST", TRACK, {"events": EVENT}, "events"),
    "track: missing id": ("POST", TRACK, {"events": [{k: v for k, v in EVENT.items() if k != "id"}]}, "id"),
    "track: id too long": ("POST", TRACK, {"events": [{**EVENT, "id": "e" * 65}]}, "id"),
    "track: id with space": ("POST", TRACK, {"events": [{**EVENT, "id": "e 1"}]}, "id"),
    "track: creator bad": ("POST", TRACK, {"events": [{**EVENT, "creator": "x"}]}, "creator"),
    "track: type unknown": ("POST", TRACK, {"events": [{**EVENT, "type": "purchase"}]}, "type"),
    "track: ref too long": ("POST", TRACK, {"events": [{**EVENT, "ref": "r" * 41}]}, "ref"),
    "track: ref empty": ("POST", TRACK, {"events": [{**EVENT, "ref": ""}]}, "ref"),
    "track: count 0": ("POST", TRACK, {"events": [{**EVENT, "count": 0}]}, "count"),
    "track: count negative": ("POST", TRACK, {"events": [{**EVENT, "count": -3}]}, "count"),
    "track: count huge": ("POST", TRACK, {"events": [{**EVENT, "count": 10**30}]}, "count"),
    "track: count as string": ("POST", TRACK, {"events": [{**EVENT, "count": "2"}]}, "count"),
    "track: at not a time": ("POST", TRACK, {"events": [{**EVENT, "at": "yesterday"}]}, "at"),
    "track: at impossible date": ("POST", TRACK, {"events": [{**EVENT, "at": "2026-13-45T00:00:00Z"}]}, "at"),
    "track: at huge number": ("POST", TRACK, {"events": [{**EVENT, "at": 10**30}]}, "at"),
    "track: at null": ("POST", TRACK, {"events": [{**EVENT, "at": None}]}, "at"),
    "track: unknown field": ("POST", TRACK, {"events": [{**EVENT, "user_id": 1}]}, "user_id"),
}


@pytest.mark.parametrize("method, path, body, field", WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
def test_wrong_types_missing_and_out_of_range_fields_are_400(client, rt, world, before, method, path,
                                                             body, field):
    error = assert_error(send(client, method, path, body, world["ben"]), 400, "invalid_request")
    assert field in error["message"]
    assert full_snapshot(rt) == before


BAD_QUERIES = ["limit=0", "limit=501", "limit=-1", "limit=abc", "limit=1.5", f"limit={10**30}",
               "before_id=0", "before_id=-5", f"before_id={2**63}", "before_id=x"]


@pytest.mark.parametrize("path", [f"{C}/statement", f"{C}/commissions", f"{C}/withdrawals"])
def test_bad_paging_parameters_are_400(client, rt, world, before, path):
    for query in BAD_QUERIES:
        error = assert_error(client.get(f"{path}?{query}", headers=world["ben"]), 400, "invalid_request")
        assert query.split("=")[0] in error["message"], query
    assert full_snapshot(rt) == before


# -- domain refusals --------------------------------------------------------------------------

def test_unknown_sku_is_404_and_writes_nothing(client, rt, world, before):
    assert_error(send(client, "PUT", f"{C}/prices/NO-SUCH", {"markup_fen": 1}, world["ann"]), 404,
                 "unknown_sku")
    assert full_snapshot(rt) == before


def test_markup_above_the_cap_is_400_and_writes_nothing(client, rt, world, before):
    assert_error(send(client, "PUT", f"{C}/prices/{SKU}", {"markup_fen": 3001}, world["ann"]), 400,
                 "markup_too_high")
    assert full_snapshot(rt) == before


@pytest.mark.parametrize("who, path, body, status, code", [
    ("shopper", "join", {"invite_code": "NOSUCH99"}, 404, "unknown_invite_code"),
    ("ann", "join", {"invite_code": "ANNCODE"}, 400, "self_binding"),
    ("ann", "bind", {"code": "ANNCODE"}, 400, "self_binding"),
    ("ann", "bind", {"code": "BENCODE"}, 400, "invite_cycle"),
    ("ben", "bind", {"code": "NOSUCH99"}, 404, "unknown_invite_code"),
    ("ben", "join", {"invite_code": "SHOPCODE"}, 409, "already_bound"),
])
def test_refused_bindings_write_nothing(client, rt, login, world, who, path, body, status, code):
    # given a third creator (Cat) to try to move Ben to, and Ben's code
    cat = client.post(f"{C}/join", json={}, headers=login("cat")).json["code"]
    ben = client.get(f"{C}/me", headers=world["ben"]).json["code"]
    codes = {"ANNCODE": world["ann_code"], "BENCODE": ben, "SHOPCODE": cat}
    body = {k: codes.get(v, v) for k, v in body.items()}
    before = full_snapshot(rt)
    assert_error(send(client, "POST", f"{C}/{path}", body, world[who]), status, code)
    assert full_snapshot(rt) == before


def test_withdrawal_refusals_write_nothing(client, rt, world, before):
    # Ann has earned nothing: below the minimum, then more than is available
    for body, status, code in (({"amount_fen": 9_999, "method": "wallet"}, 400, "below_minimum"),
                               ({"amount_fen": 10_000, "method": "credit"}, 409, "insufficient_balance")):
        headers = {**world["ann"], "Idempotency-Key": f"key-{code}"}
        assert_error(send(client, "POST", f"{C}/withdrawals", body, headers), status, code)
    # and a malformed Idempotency-Key header is refused before anything else
    for key in ("short", "k" * 129, "has space!"):
        headers = {**world["ann"], "Idempotency-Key": key}
        assert_error(send(client, "POST", f"{C}/withdrawals", {"amount_fen": 10_000, "method": "wallet"},
                          headers), 400, "invalid_request")
    assert full_snapshot(rt) == before


def test_tracking_an_unknown_creator_writes_nothing(client, rt, world, before):
    events = [{**EVENT, "creator": world["ann_code"]}, {**EVENT, "id": "ev-2", "creator": "NOSUCH99"}]
    assert_error(send(client, "POST", TRACK, {"events": events}, world["shopper"]), 404, "unknown_creator")
    assert full_snapshot(rt) == before


def test_a_batch_larger_than_the_body_limit_is_413(client, rt, world, before):
    events = [{**EVENT, "id": f"ev-{i}"} for i in range(1001)]
    assert_error(send(client, "POST", TRACK, {"events": events}, world["shopper"]), 413,
                 "request_entity_too_large")
    assert full_snapshot(rt) == before


def test_ending_an_unknown_or_someone_elses_live_session_is_404_and_queues_nothing(client, rt, world):
    live_id = send(client, "POST", f"{C}/live", {}, world["ann"]).json["id"]
    before = full_snapshot(rt)
    for who, path in (("ben", f"{C}/live/{live_id}/end"), ("ann", f"{C}/live/{live_id + 1}/end")):
        assert_error(send(client, "POST", path, None, world[who]), 404, "live_not_found")
    for path in (f"{C}/live/-1/end", f"{C}/live/abc/end"):  # not a route at all
        assert_error(send(client, "POST", path, None, world["ann"]), 404, "not_found")
    assert full_snapshot(rt) == before
