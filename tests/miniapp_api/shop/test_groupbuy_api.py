"""Group-buy in the mini-program API: starting and joining through POST /orders with every
refusal a clear 4xx that writes nothing, and the read routes (activities, one activity with its
open teams, a team's page)."""

from __future__ import annotations

import datetime as dt

from models.db import db, utcnow
from models.groupbuy import GroupActivity, GroupMember, GroupTeam
from models.inventory import OrderItem
from models.orders import Order
from tests.factories import ORDERS, api_group, expire_team, group_sale, team_row


def rows() -> tuple[int, int, int, int]:
    """orders, teams, members, reserved items: what a refused request must not add to."""
    with db.connection_context():
        return (Order.select().count(), GroupTeam.select().count(), GroupMember.select().count(),
                OrderItem.select().count())


def refused(client, auth: dict, body: dict, status: int, code: str) -> dict:  # noqa: ANN001
    before = rows()
    resp = client.post(ORDERS, json=body, headers=auth)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["code"] == code, resp.json
    assert rows() == before  # nothing written, nothing reserved
    return resp.json


def test_every_bad_group_request_is_a_clear_4xx_and_writes_nothing(client, login, fake_pay, run_jobs, shop):
    # given an activity of 2 per team, one team per user, with a full team and an open one
    sku, activity = group_sale(shop, size=2)
    other = shop.card_sku(keys=2)
    lead, joiner, third = login("lead"), login("joiner"), login("third")
    full = api_group(client, lead, sku, activity=activity)["group_team"]
    api_group(client, joiner, sku, team=full)
    open_team = api_group(client, third, sku, activity=activity)["group_team"]
    newcomer = login("newcomer")
    # when each bad request is sent, then it is refused with its code and nothing is written
    body = {"sku": sku.code, "quantity": 1}
    message = refused(client, newcomer, {**body, "team": full}, 409, "group_full")["error"]["message"]
    assert str(open_team) in message  # the open teams of the activity, to join instead
    refused(client, lead, {**body, "team": open_team}, 409, "group_limit")  # the leader is in a team already
    refused(client, third, {**body, "team": open_team}, 409, "group_already_member")  # own team twice
    refused(client, newcomer, {**body, "quantity": 2, "team": open_team}, 400, "invalid_quantity")
    refused(client, newcomer, {"sku": other.code, "quantity": 1, "team": open_team}, 400, "group_wrong_sku")
    refused(client, newcomer, {**body, "team": 999_999}, 404, "group_team_not_found")
    refused(client, newcomer, {**body, "group_activity": 999_999}, 404, "group_activity_not_found")
    refused(client, newcomer, {**body, "group_activity": activity, "team": open_team}, 400, "invalid_group")
    refused(client, newcomer, {**body, "team": open_team, "coupons": [1]}, 400, "coupon_not_with_group")
    expire_team(open_team)
    refused(client, newcomer, {**body, "team": open_team}, 409, "group_expired")
    with db.connection_context():
        GroupActivity.update(ends_at=utcnow() - dt.timedelta(seconds=1)).where(GroupActivity.id == activity).execute()
    refused(client, newcomer, {**body, "group_activity": activity}, 409, "group_activity_closed")
    # and the one good request still works: a closed activity refuses, a fresh one takes the newcomer
    sku2, activity2 = group_sale(shop, size=2)
    assert api_group(client, newcomer, sku2, activity=activity2)["group_team"] is not None


def test_a_closed_team_and_a_leader_who_is_not_new_are_refused(client, login, fake_pay, run_jobs, shop):
    # given a new-leaders-only activity and a shopper who already paid an order
    sku, activity = group_sale(shop, size=2, leader_must_be_new=True)
    veteran = login("veteran")
    from tests.factories import api_buy

    api_buy(client, fake_pay, veteran, shop.card_sku(keys=1))
    run_jobs()
    # when the veteran starts a team, then it is refused
    refused(client, veteran, {"sku": sku.code, "quantity": 1, "group_activity": activity}, 409,
            "group_leader_not_new")
    # and a team that succeeded refuses new members
    team = api_group(client, login("new1"), sku, activity=activity, fake_pay=fake_pay)["group_team"]
    api_group(client, login("new2"), sku, team=team, fake_pay=fake_pay)
    run_jobs()
    assert team_row(team).state == "succeeded"
    refused(client, veteran, {"sku": sku.code, "quantity": 1, "team": team}, 409, "group_closed")


def test_the_read_routes_show_activities_open_teams_and_a_team_page(client, login, fake_pay, run_jobs, shop):
    # given two open activities, one with a team whose leader paid
    sku, activity = group_sale(shop, size=3, price=990, retail=1990)
    group_sale(shop, size=2)
    me = login("me")
    team = api_group(client, me, sku, activity=activity, fake_pay=fake_pay)["group_team"]
    run_jobs()
    # when the activities are listed one per page
    first = client.get("/api/v1/group-activities?limit=1").json
    second = client.get(f"/api/v1/group-activities?limit=1&after={first['next_after']}").json
    # then both come, paged
    assert first["activities"][0]["id"] == activity and first["activities"][0]["group_price_fen"] == 990
    assert len(second["activities"]) == 1 and second["activities"][0]["id"] != activity
    # and the activity shows its open team, and the team page its progress, publicly and to me
    detail = client.get(f"/api/v1/group-activities/{activity}").json
    assert [t["id"] for t in detail["open_teams"]] == [team]
    page = client.get(f"/api/v1/group-teams/{team}").json
    assert page["progress"] == "1/3，还差2人" and page["state"] == "open" and page["seats_free"] == 2
    assert page["viewer_is_member"] is False and page["members"][0]["leader"] is True
    assert client.get(f"/api/v1/group-teams/{team}", headers=me).json["viewer_is_member"] is True
    # and unknown ids, absurd page sizes and a bad token are clear 4xx
    assert client.get("/api/v1/group-teams/999999").status_code == 404
    assert client.get("/api/v1/group-activities/999999").json["error"]["code"] == "group_activity_not_found"
    assert client.get("/api/v1/group-activities?limit=100000").status_code == 400
    assert client.get(f"/api/v1/group-teams/{team}", headers={"Authorization": "Bearer x"}).status_code == 401
