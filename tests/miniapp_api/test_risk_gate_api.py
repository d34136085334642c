"""The risk engine's edge checks through the real mini-program API (issue 15): coupon farming,
assist and group-buy farming from the initiator's device or network, and withdrawals sent to
review. Client addresses come from the test client's REMOTE_ADDR (TRUSTED_PROXIES is 0 in tests),
device ids from the X-Device-Id header. A refusal is 403 risk_refused with a polite message; it
leaves a hit and writes nothing else."""

from __future__ import annotations

import json

import pytest

from models import risk_gate
from models.assist import Assist, AssistHelp, AssistQuota
from models.db import db
from models.orders import Order
from models.risk_tables import RiskCase, RiskHit
from tests.factories import (
    ORDERS,
    allow,
    assist_session,
    buyer,
    coupon,
    coupon_state,
    creator,
    earn,
    edge,
    gate_hits,
    gate_rule,
    group_sale,
    signal_rows,
)
from tests.miniapp_api.asserts import assert_error, snapshot

CLAIM = "/api/v1/coupons/claim"
HOME, NEIGHBOUR, OFFICE, CAFE = "36.110.20.7", "36.110.99.1", "117.136.4.20", "223.104.3.9"  # global addresses
CODE = "SPRING2026SALE"


def claim(client, auth: dict, ip: str, device: str | None = None):  # noqa: ANN001, ANN201
    return client.post(CLAIM, json={"code": CODE}, **edge(auth, ip, device))


# ---- coupon farming ---------------------------------------------------------------------------------

def test_a_family_of_two_claims_and_a_third_account_on_that_network_is_refused(client, login):  # noqa: ANN001
    # given a coupon claimable by code
    made = coupon(code=CODE)
    # when mum and dad claim it at home
    assert claim(client, login("mum"), HOME).status_code == 201
    assert claim(client, login("dad"), HOME).status_code == 201
    # and a third account tries from the same address, twice
    farm = login("farm-3")
    before = coupon_state()
    first, again = claim(client, farm, HOME), claim(client, farm, HOME)
    # then it is refused politely, nothing is granted, and one hit names the account
    error = assert_error(first, 403, "risk_refused")
    assert "领取" in error["message"]
    assert_error(again, 403, "risk_refused")
    assert coupon_state() == before
    hits = gate_hits("coupon_farming")
    assert [(h.subject_kind, h.subject_id) for h in hits] == [("user", buyer("farm-3").id)]
    assert json.loads(hits[0].evidence)["shared"] == "ip" and json.loads(hits[0].evidence)["coupon"] == made.id
    # and every attempt left a claim signal, hashed (never the address)
    rows = signal_rows(event="claim")
    assert len(rows) == 4 and {r.ref for r in rows} == {f"coupon:{made.id}"}
    assert all(r.ip_hash and r.ip_hash != HOME and r.ip_net == "36.110.20" for r in rows)
    # and the neighbour on another network claims, and mum again is the coupon's own refusal
    assert claim(client, login("neighbour"), NEIGHBOUR).status_code == 201
    assert_error(claim(client, login("mum"), HOME), 409, "coupon_limit")


def test_one_device_on_three_networks_counts_as_one_place(client, login):  # noqa: ANN001
    # given a coupon, and one phone logged into three accounts on different networks
    coupon(code=CODE)
    assert claim(client, login("acc-1"), HOME, "phone-1").status_code == 201
    assert claim(client, login("acc-2"), OFFICE, "phone-1").status_code == 201
    # when the third account claims from a cafe with the same device, then it is refused
    assert_error(claim(client, login("acc-3"), CAFE, "phone-1"), 403, "risk_refused")
    assert json.loads(gate_hits("coupon_farming")[0].evidence)["shared"] == "device"
    # and another device in that cafe claims
    assert claim(client, login("acc-4"), CAFE, "phone-2").status_code == 201


def test_addresses_that_are_not_a_shoppers_are_not_compared(client, login):  # noqa: ANN001
    # given a coupon, when three accounts claim through a local address (a proxy's own) or none
    coupon(code=CODE)
    for i, ip in enumerate(("127.0.0.1", "127.0.0.1", "10.0.0.3", "10.0.0.3")):
        # then every claim succeeds: such an address tells shoppers apart no better than nothing
        assert claim(client, login(f"lan-{i}"), ip).status_code == 201
    assert gate_hits() == []


@pytest.mark.parametrize("how", ["disabled", "allowlisted", "not_blocking"])
def test_a_disabled_rule_or_an_allowlisted_shopper_claims(client, login, how):  # noqa: ANN001
    # given two accounts that claimed at home, and the third account's way through
    coupon(code=CODE)
    for who in ("mum", "dad"):
        assert claim(client, login(who), HOME).status_code == 201
    third = login("aunt")
    if how == "disabled":
        gate_rule("coupon_farming", enabled=False)
    elif how == "allowlisted":
        allow("user", buyer("aunt").id, "coupon_farming")
        risk_gate.forget_cached_rules()  # an allowlist entry applies within RISK_GATE_RULE_CACHE_S; now here
    else:
        gate_rule("coupon_farming", blocking=False)
    # when the third claims at home, then it passes
    assert claim(client, third, HOME).status_code == 201
    # and only a rule that is on but does not block left a hit
    assert len(gate_hits("coupon_farming")) == (1 if how == "not_blocking" else 0)


# ---- assist farming -------------------------------------------------------------------------------

def test_a_helper_on_the_starters_network_or_device_does_not_count(client, login, shop):  # noqa: ANN001
    # given ann's assist, started at home on her phone
    sku = shop.card_sku(keys=20, price=9_900, code="CARD-A")
    session_id, _ = assist_session(sku)
    ann = login("ann")
    started = client.post(f"/api/v1/live/sessions/{session_id}/assists", json={"sku": "CARD-A"},
                          **edge(ann, HOME, "ann-phone"))
    assert started.status_code == 201, started.json
    token = started.json["token"]

    def help_(who: str, ip: str, device: str | None = None):  # noqa: ANN202
        return client.post(f"/api/v1/live/assists/{token}/help", **edge(login(who), ip, device))

    with db.connection_context():
        before = (Assist.select().count(), AssistHelp.select().count(), AssistQuota.select().count())
    # when her second account helps from home, and another with her phone from elsewhere
    ben, carl = help_("ben", HOME, "ben-phone"), help_("carl", OFFICE, "ann-phone")
    # then neither counts: 403 risk_refused, nothing written but a hit each
    assert_error(ben, 403, "risk_refused")
    assert_error(carl, 403, "risk_refused")
    with db.connection_context():
        assert (Assist.select().count(), AssistHelp.select().count(), AssistQuota.select().count()) == before
    hits = gate_hits("assist_farming")
    assert [(h.subject_id, json.loads(h.evidence)["shared"]) for h in hits] == [
        (buyer("ben").id, "ip"), (buyer("carl").id, "device")]
    # and a friend on her own network and phone counts
    dora = help_("dora", CAFE, "dora-phone")
    assert dora.status_code == 200 and dora.json["helpers"] == 1
    # and ann herself is the assist's own refusal
    assert_error(client.post(f"/api/v1/live/assists/{token}/help", **edge(ann, HOME, "ann-phone")), 403,
                 "self_assist")


# ---- group-buy farming ------------------------------------------------------------------------------

def test_a_joiner_on_the_openers_network_is_refused_before_the_order(client, login, shop, rt):  # noqa: ANN001
    # given olga's team of three, opened at home
    sku, activity = group_sale(shop, size=3)
    opened = client.post(ORDERS, json={"sku": sku.code, "group_activity": activity}, **edge(login("olga"), HOME))
    assert opened.status_code == 201, opened.json
    team = opened.json["group_team"]
    # when her second account joins from home
    before = snapshot(rt)
    refused = client.post(ORDERS, json={"sku": sku.code, "team": team}, **edge(login("pat"), HOME))
    # then it is refused before any order: nothing written but the hit
    assert_error(refused, 403, "risk_refused")
    assert snapshot(rt) == before
    hit = gate_hits("group_farming")[0]
    assert (hit.subject_kind, hit.subject_id, hit.period) == ("user", buyer("pat").id, f"t{team}")
    # and a friend from another network joins the same team
    joined = client.post(ORDERS, json={"sku": sku.code, "team": team}, **edge(login("quinn"), NEIGHBOUR))
    assert joined.status_code == 201 and joined.json["group_team"] == team
    assert [r.ref for r in signal_rows(event="group_join")] == [f"team:{team}", f"team:{team}"]
    with db.connection_context():
        assert Order.select().count() == 2


# ---- withdrawals --------------------------------------------------------------------------------------

def test_a_first_withdrawal_and_a_spike_wait_for_review(client, login):  # noqa: ANN001
    # given ben, a creator with 1,000 yuan available
    ben = creator("ben")
    earn(ben, 100_000)
    auth = login("ben")

    def withdraw(fen: int, key: str):  # noqa: ANN202
        return client.post("/api/v1/creator/withdrawals", json={"amount_fen": fen, "method": "wallet"},
                           **edge({**auth, "Idempotency-Key": key}, HOME, "ben-phone"))

    # when he withdraws 150 yuan for the first time (and the tap is retried)
    first, again = withdraw(15_000, "withdraw-1"), withdraw(15_000, "withdraw-1")
    # then it waits for review, with one hit and an item on his case holding the amount
    assert first.status_code == 201 and first.json["state"] == "review" and again.json == first.json
    with db.connection_context():
        hits = list(RiskHit.select().where(RiskHit.subject_kind == "withdrawal"))
        assert [(h.code, h.subject_id, h.creator_id) for h in hits] == [("withdrawal_first", first.json["id"], ben.id)]
        case = RiskCase.get((RiskCase.creator_id == ben.id) & (RiskCase.state == "open"))
        assert (case.outcome, case.held_fen) == ("review", 15_000)
    # and a second one like it goes through; a third over 3x his average waits again
    second = withdraw(15_000, "withdraw-2")
    assert second.json["state"] == "approved"
    spike = withdraw(50_000, "withdraw-3")
    assert spike.json["state"] == "review"
    with db.connection_context():
        assert RiskHit.get(RiskHit.subject_id == spike.json["id"]).code == "withdrawal_spike"
        assert RiskCase.get_by_id(case.id).held_fen == 65_000
    # and each request left a withdrawal signal
    assert [r.ref for r in signal_rows(event="withdrawal")] == [
        f"withdrawal:{first.json['id']}", f"withdrawal:{second.json['id']}", f"withdrawal:{spike.json['id']}"]
