"""The creators pages over real HTTP: search with masked openids and keyset pages, a profile
whose balances are the ledger's, the team tree loaded one level at a time, and the owner's
actions (rebind, penalize, lift penalty, adjust level): each needs a reason, runs once, is
audited, and every other role gets 403 with nothing changed."""

from __future__ import annotations

import re

import pytest

from models import ledger, withdrawals
from models.audit import AuditEntry
from models.db import db
from models.events import events_for
from tests.admin.conftest import ACTION, CSRF
from tests.factories import DUE_NOW, chain, creator, earn, fresh, make_sku, named, paid_order

NON_OWNERS = ("finance", "support", "ops", "readonly")


def audit_rows(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def fen_of(page: bytes, element_id: str) -> int:
    found = re.search(rf'id="{element_id}" data-fen="(-?\d+)"'.encode(), page)
    assert found, f"no {element_id} on the page"
    return int(found.group(1))


def table(page: bytes) -> bytes:
    """The list of creators on a page (not the search box, which echoes the query)."""
    return page[page.index(b'id="creators"'):]


# ---- search and profile -------------------------------------------------------------------------

def test_search_finds_creators_by_code_name_and_openid_with_openids_masked_by_role(admin):
    # given three creators
    alice = creator("oAlice-openid-0001", name="爱丽丝", code="ALICE001")
    bob = creator("oBob-openid-0002", name="鲍勃", code="BOB00002")
    creator("oCarol-openid-0003", name="卡罗尔", code="CAROL003")
    support, finance = admin("support"), admin("finance")
    # when support searches by code, by a part of the name and by the full openid
    by_code = support.get("/admin/creators/?q=ALICE001")
    by_name = support.get("/admin/creators/?q=鲍")
    by_openid = support.get("/admin/creators/?q=oBob-openid-0002")
    # then each finds exactly that creator
    assert by_code.status_code == by_name.status_code == by_openid.status_code == 200
    assert b'data-creator="ALICE001"' in by_code.data and b"BOB00002" not in by_code.data
    assert b'data-creator="BOB00002"' in by_name.data and b"ALICE001" not in by_name.data
    assert b'data-creator="BOB00002"' in by_openid.data and b"CAROL003" not in by_openid.data
    # and support sees the openid masked, finance (personal.unmasked) in full
    listed_openid = table(by_openid.data)
    assert b"oBob-openid-0002" not in listed_openid and "oBo…02".encode() in listed_openid
    assert b"oBob-openid-0002" in table(finance.get("/admin/creators/?q=BOB00002").data)
    # and the unfiltered list is newest first
    listed = support.get("/admin/creators/").data
    assert listed.index(b"CAROL003") < listed.index(b"BOB00002") < listed.index(b"ALICE001")
    assert f'/admin/creators/{alice.id}'.encode() in listed and f"/admin/creators/{bob.id}".encode() in listed


def test_the_creator_list_pages_by_keyset(admin):
    # given 55 creators (one page holds 50)
    made = [creator(f"page-{i}", code=f"PAGE{i:04d}") for i in range(55)]
    a = admin("readonly")
    # when the first page is read and its "next" link followed
    first = a.get("/admin/creators/").data
    link = re.search(rb'id="next-page" href="([^"]+)"', first)
    assert link, "a next-page link"
    second = a.get(link.group(1).decode().replace("&amp;", "&")).data
    # then the pages split the creators newest first without overlap, and the last has no next link
    assert b"PAGE0054" in first and b"PAGE0005" in first and b"PAGE0004" not in first
    assert b"PAGE0004" in second and b"PAGE0000" in second and b"PAGE0005" not in second
    assert b'id="next-page"' not in second
    assert f"before={made[5].id}".encode() in link.group(1)


def test_the_profile_shows_level_upline_team_and_the_ledgers_balances(admin, shop):
    # given a creator with an upline chain, a team, sales and money in several buckets
    top, parent, c = chain(3, 2, 1, prefix="prof")
    kid = named(parent=c)
    named(parent=kid)  # second level of c
    sku = make_sku(shop, price=10_000)
    paid_order(kid, sku, amount=12_300)
    paid_order(c, sku, amount=4_500)
    earn(c, 300_000)
    with db.connection_context():
        w = withdrawals.request_withdrawal(c, 120_000, "wallet", policy=DUE_NOW)
        withdrawals.request_withdrawal(c, 30_000, "credit", policy=DUE_NOW)
        ledger.post("test-pending:1", "commission", [ledger.Leg(ledger.COMMISSION_EXPENSE, 777),
                                                    ledger.Leg(ledger.creator_account(c.id, ledger.PENDING), -777)])
        owed = ledger.owed_to_creator(c.id)
    # when support opens the profile
    page = admin("support").get(f"/admin/creators/{c.id}")
    # then the balances are the ledger's buckets
    assert page.status_code == 200
    assert fen_of(page.data, "balance-pending") == owed[ledger.PENDING] == 777
    assert fen_of(page.data, "balance-available") == owed[ledger.AVAILABLE] == 150_000
    assert fen_of(page.data, "balance-withdrawing") == owed[ledger.WITHDRAWING] == 120_000
    assert fen_of(page.data, "balance-credit") == owed[ledger.CREDIT] == 30_000
    # and the level, the upline chain (parent, grandparent), team sizes and 30-day team GMV
    assert "一星 (1)".encode() in page.data
    upline = page.data[page.data.index(b'id="upline"'):]
    assert upline.index(parent.code.encode()) < upline.index(top.code.encode())
    assert b'id="team-direct">1<' in page.data and b'id="team-second">1<' in page.data
    assert fen_of(page.data, "team-gmv") == 12_300
    # and its recent sales and withdrawals
    assert w.no.encode() in page.data and b"45.00" in page.data
    # and an unknown creator is a 404 page
    assert admin("support").get("/admin/creators/999999").status_code == 404


# ---- the team tree --------------------------------------------------------------------------------

def test_the_tree_shows_children_with_their_figures_and_expands_on_demand(admin, shop):
    # given a creator with two direct members, one of whom has a team of her own and sales
    root = named("tree-root")
    first, second = named("tree-a", parent=root, rank=2), named("tree-b", parent=root)
    grandkid = named("tree-a1", parent=first)
    sku = make_sku(shop, price=10_000)
    paid_order(first, sku, amount=8_800)
    paid_order(first, sku, amount=1_200)
    a = admin("readonly")
    # when the tree page is opened
    page = a.get(f"/admin/creators/{root.id}/tree")
    # then it lists the direct members with rank, direct team size and 30-day GMV
    assert page.status_code == 200
    body = page.data.decode()
    assert f'data-creator="{first.code}"' in body and f'data-creator="{second.code}"' in body
    assert grandkid.code not in body  # the next level is not loaded yet
    node = body[body.index(f'data-creator="{first.code}"'):]
    assert "二星" in node[:600] and '<span class="qx-size">1</span>' in node[:600]
    assert 'data-fen="10000"' in node[:600]
    # when a member is expanded (the JSON behind the button)
    expanded = a.get(f"/admin/creators/{first.id}/children.json")
    # then her children come with their figures
    assert expanded.status_code == 200
    nodes = expanded.json["nodes"]
    assert [(n["code"], n["direct_size"], n["gmv_fen"]) for n in nodes] == [(grandkid.code, 0, 0)]
    assert expanded.json["more_after"] is None
    # and a leaf has no children
    assert a.get(f"/admin/creators/{grandkid.id}/children.json").json["nodes"] == []


def test_a_big_level_comes_100_at_a_time_with_more(admin):
    # given a creator with 103 direct members
    root = named("big-root")
    kids = [creator(f"big-kid-{i}", parent=root) for i in range(103)]
    a = admin("readonly")
    # when the tree and the "more" page are read
    page = a.get(f"/admin/creators/{root.id}/tree").data.decode()
    first = a.get(f"/admin/creators/{root.id}/children.json").json
    rest = a.get(f"/admin/creators/{root.id}/children.json?after={first['more_after']}").json
    # then 100 come first (oldest first), then the other 3, with nothing twice
    assert page.count("data-creator=") == 100 and 'class="btn btn-sm btn-outline-secondary qx-more"' in page
    assert [n["id"] for n in first["nodes"]] == [k.id for k in kids[:100]]
    assert [n["id"] for n in rest["nodes"]] == [k.id for k in kids[100:]] and rest["more_after"] is None


def test_the_tree_needs_creators_view(admin):
    # given a creator: every role with creators.view reads its tree
    root = named("perm-root")
    for role in ("owner", "finance", "support", "ops", "readonly"):
        assert admin(role).get(f"/admin/creators/{root.id}/tree").status_code == 200


# ---- actions ---------------------------------------------------------------------------------------

def test_the_owner_rebinds_a_creator_with_a_reason_and_it_is_audited(admin):
    # given a creator under one upline and another creator
    old, new = named("rb-old"), named("rb-new")
    moved = named("rb-moved", parent=old)
    kid = named("rb-kid", parent=moved)
    owner = admin("owner")
    # when the owner moves it under the new upline with a reason
    answer = owner.post(f"/admin/creators/{moved.id}/rebind", {"to": new.code, "reason": "客户申请换团队"},
                        page=f"/admin/creators/{moved.id}")
    # then it is moved (its own team's grandparent too), with an event and an audit row
    assert answer.status_code == 302
    assert fresh(moved).parent_id == new.id and fresh(kid).grandparent_id == new.id
    with db.connection_context():
        event = [e for e in events_for(f"creator:{moved.id}") if e.topic == "creator.rebound"][-1]
    assert event.payload["new_parent"] == new.id and event.actor == f"operator:{owner.op.id}"
    [row] = audit_rows("creator.rebind")
    assert (row.object, row.reason, row.operator_name) == (f"creator:{moved.id}", "客户申请换团队", owner.op.name)
    assert row.before["parent_id"] == old.id and row.after["parent_id"] == new.id
    # when it is detached
    owner.post(f"/admin/creators/{moved.id}/rebind", {"detach": "1", "reason": "独立"},
               page=f"/admin/creators/{moved.id}")
    assert fresh(moved).parent_id is None and len(audit_rows("creator.rebind")) == 2


def test_rebind_mistakes_are_clear_and_change_nothing(admin):
    up, c = named("rbm-up"), named("rbm-c")
    kid = named("rbm-kid", parent=c)
    owner = admin("owner")
    page = f"/admin/creators/{c.id}"
    cases = [({"to": up.code}, 400),  # no reason
             ({"to": "NOSUCHCODE", "reason": "换团队"}, 400),  # unknown code
             ({"to": kid.code, "reason": "换团队"}, 400),  # a cycle
             ({"reason": "换团队"}, 400)]  # neither a code nor detach
    for form, status in cases:
        answer = owner.post(f"/admin/creators/{c.id}/rebind", form, page=page)
        assert answer.status_code == status, (form, answer.status_code)
        assert b"alert" in answer.data
    assert fresh(c).parent_id is None and audit_rows("creator.rebind") == []


def test_the_owner_penalizes_lifts_and_adjusts_a_level(admin):
    # given a three-star creator
    c = named("pen-c", rank=3)
    owner = admin("owner")
    page = f"/admin/creators/{c.id}"
    # when the owner penalizes it down to one star
    assert owner.post(f"/admin/creators/{c.id}/penalize", {"to_rank": "1", "reason": "刷单"},
                      page=page).status_code == 302
    # then it is one star, capped there, with the penalty in its history on the profile
    assert (fresh(c).rank, fresh(c).rank_cap) == (1, 1)
    profile = owner.get(page).data
    assert b'data-topic="creator.penalized"' in profile and "刷单".encode() in profile
    # and a level above the cap is refused while the penalty holds
    refused = owner.post(f"/admin/creators/{c.id}/rank", {"rank": "4", "reason": "调整"}, page=page)
    assert refused.status_code == 400 and fresh(c).rank == 1
    # when the penalty is lifted and the level set to four stars
    assert owner.post(f"/admin/creators/{c.id}/lift-penalty", {"reason": "申诉成功"}, page=page).status_code == 302
    assert fresh(c).rank_cap is None
    assert owner.post(f"/admin/creators/{c.id}/rank", {"rank": "4", "reason": "线下核实业绩"},
                      page=page).status_code == 302
    # then it is four stars, with a level-change event, and each action is one audit row with its reason
    assert fresh(c).rank == 4
    with db.connection_context():
        change = [e for e in events_for(f"creator:{c.id}") if e.topic == "creator.level_changed"][-1]
    assert (change.payload["from"], change.payload["to"]) == (1, 4) and "线下核实业绩" in change.payload["reason"]
    assert [(r.reason, r.before["rank"], r.after["rank"]) for r in audit_rows("creator.penalize")] == [("刷单", 3, 1)]
    assert [r.reason for r in audit_rows("creator.lift_penalty")] == ["申诉成功"]
    assert [(r.before["rank"], r.after["rank"]) for r in audit_rows("creator.set_rank")] == [(1, 4)]
    # and a rank outside the table is refused
    assert owner.post(f"/admin/creators/{c.id}/rank", {"rank": "99", "reason": "x y"}, page=page).status_code == 400
    assert owner.post(f"/admin/creators/{c.id}/rank", {"rank": "abc", "reason": "x y"}, page=page).status_code == 400
    assert fresh(c).rank == 4 and len(audit_rows("creator.set_rank")) == 1


def test_a_double_submitted_action_acts_once(admin):
    c = named("dbl-c", rank=3)
    owner = admin("owner")
    page = f"/admin/creators/{c.id}"
    body = owner.get(page).data
    token = ACTION.search(body).group(1).decode()
    csrf = (CSRF.search(body).group(1) or CSRF.search(body).group(2)).decode()
    form = {"to_rank": "2", "reason": "重复提交", "csrf_token": csrf, "action_token": token}
    first = owner.client.post(f"/admin/creators/{c.id}/penalize", data=form)
    second = owner.client.post(f"/admin/creators/{c.id}/penalize", data={**form, "to_rank": "1"})
    assert first.status_code == second.status_code == 302
    assert (fresh(c).rank, fresh(c).rank_cap) == (2, 2) and len(audit_rows("creator.penalize")) == 1


@pytest.mark.parametrize("role", NON_OWNERS)
def test_every_other_role_is_refused_every_creator_action(admin, role):
    # given a creator under an upline, another creator, and an operator who is not the owner
    up, other = named(f"{role}-up"), named(f"{role}-other")
    c = named(f"{role}-c", parent=up, rank=3)
    before = fresh(c)
    a = admin(role)
    page = f"/admin/creators/{c.id}"
    # then the profile offers no action forms
    assert b'id="creator-actions"' not in a.get(page).data
    # when it posts each action anyway (with valid CSRF and action tokens)
    for path, form in (("rebind", {"to": other.code}), ("penalize", {"to_rank": "1"}), ("lift-penalty", {}),
                       ("rank", {"rank": "5"})):
        answer = a.post(f"/admin/creators/{c.id}/{path}", {**form, "reason": "越权尝试"}, page=page)
        # then each is a 403 and nothing changes
        assert answer.status_code == 403, (path, answer.status_code)
    after = fresh(c)
    assert (after.parent_id, after.rank, after.rank_cap) == (before.parent_id, 3, None)
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action.startswith("creator.")).count() == 0
        assert [e.topic for e in events_for(f"creator:{c.id}")] == ["creator.joined", "creator.bound"]


def test_the_creator_withdrawal_and_ledger_pages_speak_english(admin):
    # given a creator with a team member, and an operator who chose English
    root = named("en-root")
    named("en-kid", parent=root)
    owner = admin("owner")
    assert owner.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False).status_code == 302
    # then the pages of this area are in English
    assert b"Invite code, name or openid" in owner.get("/admin/creators/").data
    profile = owner.get(f"/admin/creators/{root.id}").data
    assert b"Team tree" in profile and b"Shopping credit" in profile and b"Lift penalty" not in profile
    assert b"Expand" in owner.get(f"/admin/creators/{root.id}/tree").data
    assert b"need the approval of two different operators" in owner.get("/admin/withdrawals/").data
    assert b"Verify the ledger" in owner.get("/admin/ledger/").data
