"""The creator routes through the real HTTP API: joining and binding, the earnings center after
real orders, payments and settlement, the team view, creator pricing."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from models import reversals
from models.catalog import Sku
from models.db import db, utcnow
from models.network import Creator
from models.orders import Order
from tests.books import release, settle
from tests.factories import api_buy
from tests.miniapp_api.asserts import assert_error

API = "/api/v1"
C = f"{API}/creator"


def join(client, auth, **body) -> dict:  # noqa: ANN001, ANN003
    resp = client.post(f"{C}/join", json=body, headers=auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def set_rank(code: str, rank: int) -> None:
    with db.connection_context():
        Creator.update(rank=rank).where(Creator.code == code).execute()


@pytest.fixture
def card(shop):  # noqa: ANN001, ANN201
    """A 100-yuan card key (supply 50 yuan, the SKU's rate 10%)."""
    return shop.card_sku(keys=30, price=10_000, code="CARD-C")


@pytest.fixture
def pair(client, login):  # noqa: ANN001, ANN201
    """Ann (one-star) and Ben, who joined through Ann's code: their auth headers and codes."""
    ann_auth, ben_auth = login("ann"), login("ben")
    ann = join(client, ann_auth, name="Ann")
    set_rank(ann["code"], 1)
    ben = join(client, ben_auth, name="Ben", invite_code=ann["code"])
    return {"ann": ann_auth, "ben": ben_auth, "ann_code": ann["code"], "ben_code": ben["code"]}


# -- joining and binding ----------------------------------------------------------------------

def test_join_without_a_code_makes_a_creator_once(client, login):
    auth = login("ann")
    # given a logged-in shopper who is not a creator
    assert_error(client.get(f"{C}/me", headers=auth), 404, "not_a_creator")
    # when they join twice
    first = join(client, auth, name="Ann")
    again = join(client, auth, name="Someone else")
    # then one profile: their own code, no upline, not yet a star, a share path with the ref
    assert again == first
    assert (first["name"], first["parent_code"], first["rank"], first["level_name"]) == ("Ann", None, 0, "")
    assert first["ref"] == first["code"] and first["share_path"].endswith(f"ref={first['code']}")
    assert client.get(f"{C}/me", headers=auth).json == first


def test_join_with_a_code_binds_to_the_inviter(client, login, pair):
    # then Ben's profile names Ann as his upline, bound through the mini-program by default
    me = client.get(f"{C}/me", headers=pair["ben"]).json
    assert (me["parent_code"], me["bound_via"], me["name"]) == (pair["ann_code"], "miniapp", "Ben")
    # and a typed code is recorded as typed
    cat = join(client, login("cat"), invite_code=pair["ben_code"], via="typed")
    assert (cat["parent_code"], cat["bound_via"]) == (pair["ben_code"], "typed")
    # and Ann's level is named
    assert client.get(f"{C}/me", headers=pair["ann"]).json["level_name"] == "一星"


def test_join_with_an_unknown_code_creates_nothing(client, login):
    auth = login("ann")
    assert_error(client.post(f"{C}/join", json={"invite_code": "NOSUCH99"}, headers=auth), 404,
                 "unknown_invite_code")
    assert_error(client.get(f"{C}/me", headers=auth), 404, "not_a_creator")


def test_binding_rules_through_the_api(client, login, pair):
    dan_auth = login("dan")
    dan = join(client, dan_auth)
    # a creator cannot use their own code
    assert_error(client.post(f"{C}/bind", json={"code": dan["code"]}, headers=dan_auth), 400,
                 "self_binding")
    # an upline cannot bind under their own downline
    assert_error(client.post(f"{C}/bind", json={"code": pair["ben_code"]}, headers=pair["ann"]), 400,
                 "invite_cycle")
    # the first binding wins: Ben, bound to Ann, cannot move to Dan
    assert_error(client.post(f"{C}/bind", json={"code": dan["code"]}, headers=pair["ben"]), 409,
                 "already_bound")
    assert_error(client.post(f"{C}/join", json={"invite_code": dan["code"]}, headers=pair["ben"]), 409,
                 "already_bound")
    # the same binding again is harmless
    same = client.post(f"{C}/bind", json={"code": pair["ann_code"]}, headers=pair["ben"])
    assert same.status_code == 200 and same.json["parent_code"] == pair["ann_code"]
    # an unknown code is 404; a shopper who has not joined cannot bind
    assert_error(client.post(f"{C}/bind", json={"code": "NOSUCH99"}, headers=dan_auth), 404,
                 "unknown_invite_code")
    assert_error(client.post(f"{C}/bind", json={"code": dan["code"]}, headers=login("eve")), 404,
                 "not_a_creator")
    # and Dan, unbound so far, binds to Ben
    ok = client.post(f"{C}/bind", json={"code": pair["ben_code"], "via": "typed"}, headers=dan_auth)
    assert ok.status_code == 200 and ok.json["parent_code"] == pair["ben_code"]


# -- earnings center after real sales ---------------------------------------------------------

def test_balances_statement_and_csv_after_a_real_settlement(client, rt, login, fake_pay, card, pair):
    shopper = login("shopper")
    # given two orders through Ben's link, paid through WeChat Pay, and settled
    orders = [api_buy(client, fake_pay, shopper, card.code, pair["ben_code"]) for _ in range(2)]
    assert settle(rt).orders == 2
    # then Ben has 2 x 10% pending, Ann 2 x 5% as his one-star upline
    ben = client.get(f"{C}/balances", headers=pair["ben"])
    assert ben.status_code == 200
    assert ben.json == {"pending_fen": 2000, "available_fen": 0, "withdrawing_fen": 0, "credit_fen": 0,
                        "debt_fen": 0}
    assert client.get(f"{C}/balances", headers=pair["ann"]).json["pending_fen"] == 1000
    # when the refund window has passed
    assert release(rt) == 2
    ben = client.get(f"{C}/balances", headers=pair["ben"]).json
    assert (ben["pending_fen"], ben["available_fen"]) == (0, 2000)
    # then the statement shows the commission in, and the release out of pending into available
    st = client.get(f"{C}/statement", headers=pair["ben"]).json
    assert [(e["kind"], e["bucket"], e["amount_fen"]) for e in st["entries"]] == [
        ("release", "available", 2000), ("release", "pending", -2000), ("commission", "pending", 2000)]
    assert st["next_before_id"] is None and st["entries"][0]["created_at"].endswith("Z")
    # and it pages
    page1 = client.get(f"{C}/statement?limit=2", headers=pair["ben"]).json
    page2 = client.get(f"{C}/statement?limit=2&before_id={page1['next_before_id']}", headers=pair["ben"]).json
    assert [e["id"] for e in page1["entries"] + page2["entries"]] == [e["id"] for e in st["entries"]]
    assert page2["next_before_id"] is None
    # and the CSV download has the same entries, in yuan and fen
    resp = client.get(f"{C}/statement.csv", headers=pair["ben"])
    assert resp.status_code == 200 and resp.headers.getlist("Content-Type") == ["text/csv; charset=utf-8"]
    assert resp.headers["Content-Disposition"] == f'attachment; filename="statement-{pair["ben_code"]}.csv"'
    assert resp.data.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, for spreadsheet programs
    rows = list(csv.DictReader(io.StringIO(resp.data.decode("utf-8-sig"))))
    assert [(r["kind"], r["bucket"], r["amount_yuan"], r["amount_fen"]) for r in rows] == [
        ("release", "available", "20.00", "2000"), ("release", "pending", "-20.00", "-2000"),
        ("commission", "pending", "20.00", "2000")]
    assert len(orders) == 2


def test_commission_lines_show_orders_kinds_and_states(client, rt, login, fake_pay, card, pair):
    shopper = login("shopper")
    first = api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])
    second = api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])
    settle(rt)
    with db.connection_context():
        reversals.reverse([first["id"]], reason="fraud", actor="operator:test")
    # when Ben and Ann read their commission lines
    ben = client.get(f"{C}/commissions", headers=pair["ben"]).json
    ann = client.get(f"{C}/commissions?limit=1", headers=pair["ann"]).json
    # then each line names its order, kind, amount and where the order's commission stands
    assert [(x["order_no"], x["kind"], x["amount_fen"], x["state"]) for x in ben["lines"]] == [
        (second["no"], "sale", 1000, "pending"), (first["no"], "sale", 1000, "reversed")]
    assert [(x["order_id"], x["kind"], x["amount_fen"]) for x in ann["lines"]] == [(second["id"], "team1", 500)]
    more = client.get(f"{C}/commissions?limit=1&before_id={ann['next_before_id']}", headers=pair["ann"]).json
    assert [x["order_id"] for x in more["lines"]] == [first["id"]]


def test_team_view_sizes_and_gmv(client, rt, login, fake_pay, card, pair):
    # given Ann -> Ben -> (Dan, Eve), Ann -> Cat
    join(client, login("cat"), invite_code=pair["ann_code"])
    dan = join(client, login("dan"), invite_code=pair["ben_code"])
    join(client, login("eve"), invite_code=pair["ben_code"])
    shopper = login("shopper")
    # and sales: Ben 1 order, Dan 2 orders (100 yuan each), one unpaid order of Dan's
    api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])
    api_buy(client, fake_pay, shopper, card.code, dan["code"])
    api_buy(client, fake_pay, shopper, card.code, dan["code"])
    client.post(f"{API}/orders", json={"sku": card.code, "ref": dan["code"]}, headers=shopper)
    # when Ann reads her team
    team = client.get(f"{C}/team", headers=pair["ann"]).json
    # then two direct members, two second-level ones, GMV of paid orders only
    assert (team["direct_size"], team["second_size"]) == (2, 2)
    assert (team["direct_gmv_fen"], team["second_gmv_fen"]) == (10_000, 20_000)
    ben = next(m for m in team["members"] if m["code"] == pair["ben_code"])
    assert (ben["team_size"], ben["gmv_fen"], ben["orders"]) == (2, 10_000, 1)
    assert {c["code"]: c["gmv_fen"] for c in ben["children"]}[dan["code"]] == 20_000
    # and Ben sees Dan and Eve as his direct team, nobody as second level
    ben_team = client.get(f"{C}/team", headers=pair["ben"]).json
    assert (ben_team["direct_size"], ben_team["second_size"], ben_team["direct_gmv_fen"]) == (2, 0, 20_000)


# -- creator pricing --------------------------------------------------------------------------

def test_markup_cap_locked_supply_and_the_price_a_buyer_pays(client, rt, login, fake_pay, card, pair, shop):
    locked = shop.card_sku(keys=3, price=20_000, code="CARD-LOCKED")
    with db.connection_context():
        Sku.update(min_rank=3).where(Sku.id == locked.id).execute()
    url = f"{C}/prices/{card.code}"
    # the default cap is 30% of retail: 3000 fen on a 100-yuan card
    assert_error(client.put(url, json={"markup_fen": 3001}, headers=pair["ben"]), 400, "markup_too_high")
    assert_error(client.put(f"{C}/prices/{locked.code}", json={"markup_fen": 100}, headers=pair["ben"]),
                 400, "supply_locked")
    assert_error(client.put(f"{C}/prices/NO-SUCH-SKU", json={"markup_fen": 100}, headers=pair["ben"]),
                 404, "unknown_sku")
    ok = client.put(url, json={"markup_fen": 3000}, headers=pair["ben"])
    assert ok.status_code == 200 and ok.json == {"sku": card.code, "markup_fen": 3000}
    # the products view shows it, and the locked SKU as locked
    products = {p["sku"]: p for p in client.get(f"{C}/products", headers=pair["ben"]).json["products"]}
    assert (products[card.code]["selling_price_fen"], products[card.code]["max_markup_fen"]) == (13_000, 3000)
    assert products[card.code]["locked"] is False and products[locked.code]["locked"] is True
    assert products[card.code]["ref"] == pair["ben_code"] and products[card.code]["commission_bp"] == 1000
    # when a buyer orders through Ben's ref, they pay retail + markup; without a ref, retail
    shopper = login("shopper")
    through_ben = api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])
    plain = api_buy(client, fake_pay, shopper, card.code)
    assert (through_ben["amount_fen"], plain["amount_fen"]) == (13_000, 10_000)
    # and the markup is Ben's: paid in full next to the 10% on the retail part
    settle(rt)
    lines = {x["kind"]: x["amount_fen"] for x in client.get(f"{C}/commissions", headers=pair["ben"]).json["lines"]}
    assert lines == {"markup": 3000, "sale": 1000}
    # and setting 0 removes it
    assert client.put(url, json={"markup_fen": 0}, headers=pair["ben"]).json["markup_fen"] == 0
    assert api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])["amount_fen"] == 10_000
    with db.connection_context():
        assert Order.select().count() == 3


# -- withdrawals ------------------------------------------------------------------------------

@pytest.fixture
def earner(client, rt, login, fake_pay, shop, pair):  # noqa: ANN001, ANN201
    """Ben with 200 yuan available: one 2000-yuan sale at 10%, settled and released."""
    big = shop.card_sku(keys=5, price=200_000, code="CARD-BIG")
    order = api_buy(client, fake_pay, login("shopper"), big.code, pair["ben_code"])
    settle(rt)
    release(rt)
    assert client.get(f"{C}/balances", headers=pair["ben"]).json["available_fen"] == 20_000
    return {**pair, "order": order}


def test_a_wallet_withdrawal_moves_money_to_withdrawing_once_per_key(client, rt, earner):
    auth = {**earner["ben"], "Idempotency-Key": "withdraw-0001"}
    body = {"amount_fen": 15_000, "method": "wallet"}
    # when Ben withdraws 150 yuan to his wallet, twice with the same key (a retried tap)
    first = client.post(f"{C}/withdrawals", json=body, headers=auth)
    again = client.post(f"{C}/withdrawals", json=body, headers=auth)
    # then one withdrawal: 1% fee, paid out at T+1; below the review threshold, but Ben's first
    # withdrawal, so an operator reviews it (risk rule withdrawal_first)
    assert first.status_code == 201, first.json
    assert again.json == first.json
    w = first.json
    assert (w["method"], w["amount_fen"], w["fee_fen"], w["net_fen"], w["state"]) == (
        "wallet", 15_000, 150, 14_850, "review")
    requested = dt.datetime.fromisoformat(w["requested_at"].rstrip("Z"))
    due = dt.datetime.fromisoformat(w["due_at"].rstrip("Z"))
    assert due - requested == dt.timedelta(hours=rt.settings.WITHDRAW_PAYOUT_DELAY_H)
    assert w["no"].startswith("WD") and w["paid_at"] is None
    # and the money moved from available to withdrawing
    b = client.get(f"{C}/balances", headers=earner["ben"]).json
    assert (b["available_fen"], b["withdrawing_fen"]) == (5_000, 15_000)
    # and the same key with another amount is refused
    other = client.post(f"{C}/withdrawals", json={**body, "amount_fen": 10_000}, headers=auth)
    assert_error(other, 409, "request_key_reused")
    # and the list shows it
    listed = client.get(f"{C}/withdrawals", headers=earner["ben"]).json
    assert [x["id"] for x in listed["withdrawals"]] == [w["id"]] and listed["next_before_id"] is None
    # and the statement shows the move
    top = client.get(f"{C}/statement?limit=2", headers=earner["ben"]).json["entries"]
    assert {(e["kind"], e["bucket"], e["amount_fen"]) for e in top} == {
        ("withdrawal", "available", -15_000), ("withdrawal", "withdrawing", 15_000)}


def test_credit_withdrawal_and_the_refusals(client, rt, earner):
    ben = earner["ben"]
    # below the minimum (100 yuan)
    assert_error(client.post(f"{C}/withdrawals", json={"amount_fen": 9_999, "method": "credit"}, headers=ben),
                 400, "below_minimum")
    # more than is available
    assert_error(client.post(f"{C}/withdrawals", json={"amount_fen": 20_001, "method": "wallet"}, headers=ben),
                 409, "insufficient_balance")
    # shopping credit: at once, no fee
    resp = client.post(f"{C}/withdrawals", json={"amount_fen": 12_000, "method": "credit"}, headers=ben)
    assert resp.status_code == 201, resp.json
    assert (resp.json["state"], resp.json["fee_fen"], resp.json["paid_at"] is not None) == ("paid", 0, True)
    b = client.get(f"{C}/balances", headers=ben).json
    assert (b["available_fen"], b["credit_fen"]) == (8_000, 12_000)
    # the rest cannot be withdrawn once a clawback puts Ben in debt
    with db.connection_context():
        reversals.reverse([earner["order"]["id"]], reason="refund", actor="operator:test")
    b = client.get(f"{C}/balances", headers=ben).json
    assert (b["available_fen"], b["debt_fen"]) == (0, 12_000)
    assert_error(client.post(f"{C}/withdrawals", json={"amount_fen": 10_000, "method": "credit"}, headers=ben),
                 409, "in_debt")
    # and a creator with nothing earned has nothing to withdraw
    assert_error(client.post(f"{C}/withdrawals", json={"amount_fen": 10_000, "method": "wallet"},
                             headers=earner["ann"]), 409, "insufficient_balance")
    assert len(client.get(f"{C}/withdrawals", headers=ben).json["withdrawals"]) == 1


# -- tracking ---------------------------------------------------------------------------------

def _event(n: int, creator: str, kind: str = "video_play", **extra) -> dict:  # noqa: ANN003
    return {"id": f"ev-{n}", "creator": creator, "type": kind, "ref": "video-1",
            "at": "2026-01-02T03:04:05Z", **extra}


def test_tracking_stores_each_event_once(client, rt, login, pair):
    from models.activity import ActivityEvent

    viewer = login("viewer")
    batch = [_event(1, pair["ann_code"]), _event(2, pair["ann_code"], count=3),
             _event(3, pair["ben_code"], "live_entry", ref="42", at="2026-01-02T11:04:05+08:00")]
    # when the mini-program sends a batch, then resends it with one new event
    first = client.post(f"{API}/track", json={"events": batch}, headers=viewer)
    second = client.post(f"{API}/track", json={"events": [*batch, _event(4, pair["ann_code"])]}, headers=viewer)
    # then each event is stored once, with the viewer and the source
    assert (first.status_code, first.json) == (200, {"accepted": 3, "duplicates": 0})
    assert second.json == {"accepted": 1, "duplicates": 3}
    with db.connection_context():
        rows = {e.event_id: e for e in ActivityEvent.select()}
        viewer_id = rows["ev-1"].user_id
        assert viewer_id is not None and {e.user_id for e in rows.values()} == {viewer_id}
        assert {e.source for e in rows.values()} == {"api"}
        assert (rows["ev-2"].count, rows["ev-1"].count) == (3, 1)
        # the +08:00 time is stored in UTC
        assert (rows["ev-3"].kind, rows["ev-3"].ref, rows["ev-3"].occurred_at) == (
            "live_entry", "42", dt.datetime(2026, 1, 2, 3, 4, 5))


def test_tracking_refuses_bad_batches_whole(client, rt, login, pair):
    from models.activity import ActivityEvent

    viewer = login("viewer")
    good = _event(1, pair["ann_code"])
    too_many = [_event(i, pair["ann_code"]) for i in range(rt.settings.ACTIVITY_MAX_BATCH + 1)]
    assert_error(client.post(f"{API}/track", json={"events": too_many}, headers=viewer), 400, "too_many_events")
    assert_error(client.post(f"{API}/track", json={"events": [good, _event(2, "NOSUCH99")]}, headers=viewer),
                 404, "unknown_creator")
    future = (utcnow() + dt.timedelta(days=3)).isoformat() + "Z"
    assert_error(client.post(f"{API}/track", json={"events": [good, _event(3, pair["ann_code"], at=future)]},
                             headers=viewer), 400, "invalid_occurred_at")
    assert_error(client.post(f"{API}/track", json={"events": [good]}), 401, "unauthorized")
    with db.connection_context():
        assert ActivityEvent.select().count() == 0


# -- invite progress and the funnel -----------------------------------------------------------

def test_progress_counts_invites_and_names_what_the_entry_level_needs(client, rt, login, pair):
    # given Ben, not yet a star, with one invite and no video
    join(client, login("cat"), invite_code=pair["ben_code"])
    p = client.get(f"{C}/progress", headers=pair["ben"]).json
    # then the next level is one-star: ENTRY_VIDEOS video(s) and ENTRY_INVITES invites
    assert (p["rank"], p["next"]["rank"], p["next"]["name"], p["ready"], p["invites"]) == (0, 1, "一星", False, 1)
    needs = {t["metric"]: (t["have"], t["need"], t["met"]) for t in p["next"]["thresholds"]}
    assert needs == {"videos": (0, rt.settings.ENTRY_VIDEOS, False),
                     "direct_invites": (1, rt.settings.ENTRY_INVITES, False)}
    assert p["invite_line"] == "已邀请1人，还差1人升级"
    # when a second invite joins and a video of Ben's is played (reported through /track)
    join(client, login("dan"), invite_code=pair["ben_code"])
    played = client.post(f"{API}/track", json={"events": [_event(1, pair["ben_code"])]}, headers=login("viewer"))
    assert played.json == {"accepted": 1, "duplicates": 0}
    p = client.get(f"{C}/progress", headers=pair["ben"]).json
    # then everything the entry needs is met: the next evaluation promotes him
    assert p["ready"] is True and all(t["met"] for t in p["next"]["thresholds"])
    # and Ann (one-star) is shown what two-star needs, including real sales beside her team size
    ann = client.get(f"{C}/progress", headers=pair["ann"]).json
    assert (ann["rank"], ann["name"], ann["next"]["rank"]) == (1, "一星", 2)
    assert "own_gmv_fen" in {t["metric"] for t in ann["next"]["thresholds"]}


def test_funnel_from_tracked_plays_and_entries_to_orders(client, rt, login, fake_pay, card, pair):
    viewer = login("viewer")
    # given 40 plays and 8 live-room entries reported for Ben, and 2 paid orders through his ref
    events = [_event(1, pair["ben_code"], count=30), _event(2, pair["ben_code"], count=10, ref="video-2"),
              _event(3, pair["ben_code"], "live_entry", count=8, ref="7")]
    assert client.post(f"{API}/track", json={"events": events}, headers=viewer).json["accepted"] == 3
    api_buy(client, fake_pay, viewer, card.code, pair["ben_code"])
    api_buy(client, fake_pay, viewer, card.code, pair["ben_code"])
    # when Ben reads his funnel
    f = client.get(f"{C}/funnel", headers=pair["ben"]).json
    # then plays -> entries -> orders, with conversions rounded down
    assert (f["video_plays"], f["live_entries"], f["orders"], f["gmv_fen"]) == (40, 8, 2, 20_000)
    assert f["conversion"] == {"play_to_order_bp": 500, "entry_to_order_bp": 2500, "orders_per_1000_plays": "50.00"}
    # and Ann's funnel is her own, not her team's
    assert client.get(f"{C}/funnel", headers=pair["ann"]).json["orders"] == 0


# -- live sessions ----------------------------------------------------------------------------

def test_ending_a_live_session_queues_the_settlement_of_its_orders(client, rt, login, fake_pay, card, pair,
                                                                   run_jobs):
    from models.settlement import Settlement

    shopper = login("shopper")
    # given Ben goes live and two orders are bought in his live room, one outside it
    started = client.post(f"{C}/live", json={"title": "今晚直播"}, headers=pair["ben"])
    assert started.status_code == 201, started.json
    live = started.json
    assert (live["state"], live["title"], live["ended_at"]) == ("live", "今晚直播", None)
    in_room = [api_buy(client, fake_pay, shopper, card.code, pair["ben_code"], live=live["id"]) for _ in range(2)]
    outside = api_buy(client, fake_pay, shopper, card.code, pair["ben_code"])
    run_jobs()  # deliveries
    with db.connection_context():
        assert Settlement.select().count() == 0
        assert {o.id: o.live_id for o in Order.select()} == {
            in_room[0]["id"]: live["id"], in_room[1]["id"]: live["id"], outside["id"]: None}
    # when he ends it
    ended = client.post(f"{C}/live/{live['id']}/end", headers=pair["ben"])
    # then it is ended and a settlement job is queued; running it settles exactly that session
    assert ended.status_code == 200, ended.json
    assert (ended.json["state"], ended.json["settlement_queued"]) == ("ended", True)
    assert ended.json["ended_at"] is not None
    assert rt.queue.count >= 1
    run_jobs()
    with db.connection_context():
        settled = {s.order_id: s.state for s in Settlement.select()}
    assert settled == {in_room[0]["id"]: "pending", in_room[1]["id"]: "pending"}
    assert client.get(f"{C}/balances", headers=pair["ben"]).json["pending_fen"] == 2000
    # and the live GMV shows in his funnel
    assert client.get(f"{C}/funnel", headers=pair["ben"]).json["live_gmv_fen"] == 20_000
    # and ending again is harmless: nothing more is queued
    again = client.post(f"{C}/live/{live['id']}/end", headers=pair["ben"])
    assert (again.status_code, again.json["settlement_queued"]) == (200, False)
    assert rt.queue.count == 0


def test_only_the_owner_ends_a_live_session(client, rt, pair):
    live = client.post(f"{C}/live", json={}, headers=pair["ben"]).json
    assert live["title"] == ""
    # Ann cannot end Ben's session, and an unknown id is not found
    assert_error(client.post(f"{C}/live/{live['id']}/end", headers=pair["ann"]), 404, "live_not_found")
    assert_error(client.post(f"{C}/live/{live['id'] + 100}/end", headers=pair["ben"]), 404, "live_not_found")
    assert client.post(f"{C}/live/{live['id']}/end", headers=pair["ben"]).json["state"] == "ended"
    assert rt.queue.count == 1
