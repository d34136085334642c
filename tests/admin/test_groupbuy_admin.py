"""The group-buy admin over real HTTP: activities (list with virtual completion visible, create
from the form, stop), an activity's teams and a team's members as orders move through WeChat
Pay and the jobs, and the refunds that keep failing at WeChat Pay with "retry now" — each action
audited, a bad form refused with a message and nothing written."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from models.audit import AuditEntry
from models.db import db, utcnow
from models.groupbuy import GroupActivity
from models.payments import Refund
from tasks import groupbuy as jobs
from tests.factories import api_group, expire_team, group_sale

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = "/admin/promo/groupbuy"


def local(moment: dt.datetime) -> str:
    return moment.replace(tzinfo=dt.UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def activities() -> int:
    with db.connection_context():
        return GroupActivity.select().count()


def form(sku: str, **over: str) -> dict[str, str]:
    now = utcnow()
    base = {"sku": sku, "title": "三人成团", "size": "3", "group_price": "9.90", "window_minutes": "60",
            "per_user_limit": "1", "starts": local(now - dt.timedelta(hours=1)),
            "ends": local(now + dt.timedelta(days=3)), "virtual_complete": "1"}
    base.update(over)
    return base


def test_ops_creates_an_activity_with_virtual_completion_visible_and_stops_it(admin, shop):
    sku = shop.card_sku(code="GROUP-1", price=1_990)
    ops = admin("ops")
    # when ops creates a 3-person activity at 9.90 (retail 19.90) that completes unfilled teams virtually
    answer = ops.post(f"{BASE}/new", form("GROUP-1", max_teams="100", reason="周末拼团"), page=f"{BASE}/new")
    assert answer.status_code == 302, answer.data[:600]
    with db.connection_context():
        made = GroupActivity.get(GroupActivity.title == "三人成团")
    assert (made.sku_id, made.size, made.group_price_fen, made.window_s, made.max_teams, made.virtual_complete) \
        == (sku.id, 3, 990, 3600, 100, True)
    assert [e.after["virtual_complete"] for e in audits("group.activity_create")] == [True]
    # then the list shows it, its virtual completion flagged
    page = admin("readonly").get(f"{BASE}/").data.decode()
    row = re.search(rf'<tr data-activity="{made.id}".*?</tr>', page, re.S).group(0)
    assert 'data-virtual="1"' in row and "GROUP-1" in row and "¥9.90" in row
    # and stopping it (a reason required) leaves it inactive, audited once
    bare = ops.post(f"{BASE}/{made.id}/deactivate", {}, page=f"{BASE}/{made.id}")
    assert bare.status_code == 400 and "请填写原因" in bare.data.decode()
    with db.connection_context():
        assert GroupActivity.get_by_id(made.id).active
    ops.post(f"{BASE}/{made.id}/deactivate", {"reason": "活动结束"}, page=f"{BASE}/{made.id}")
    with db.connection_context():
        assert not GroupActivity.get_by_id(made.id).active
    again = ops.post(f"{BASE}/{made.id}/deactivate", {"reason": "再停一次"}, page=f"{BASE}/{made.id}")
    assert again.status_code == 409 and len(audits("group.activity_deactivate")) == 1


@pytest.mark.parametrize("over, text", [
    ({"group_price": "29.90"}, "拼团价"),
    ({"group_price": "abc"}, "请输入以元为单位的金额"),
    ({"size": "1"}, "成团人数"),
    ({"window_minutes": "0"}, "成团时限"),
    ({"sku": "NO-SUCH"}, "NO-SUCH"),
    ({"ends": "2020-01-01 00:00"}, "开始"),
    ({"title": ""}, "标题"),
    ({"stock": "2"}, "活动库存"),
])
def test_a_bad_activity_form_is_refused_and_writes_nothing(admin, shop, over, text):
    shop.card_sku(code="GROUP-2", price=1_990)
    ops = admin("ops")
    fields = dict(over)
    answer = ops.post(f"{BASE}/new", form(fields.pop("sku", "GROUP-2"), **fields), page=f"{BASE}/new")
    assert answer.status_code == 400, answer.data[:400]
    assert text in answer.data.decode()
    assert activities() == 0 and audits("group.activity_create") == []


def test_teams_and_members_show_progress_and_orders(admin, client, login, fake_pay, run_jobs, shop):
    sku, activity = group_sale(shop, size=3)
    # given a team whose leader paid and a joiner who has not
    leader = api_group(client, login("adm-lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    joiner = api_group(client, login("adm-join"), sku, team=team)
    reader = admin("readonly")
    # when an operator opens the activity and the team
    teams = reader.get(f"{BASE}/{activity}").data.decode()
    row = re.search(rf'<tr data-team="{team}".*?</tr>', teams, re.S).group(0)
    members = reader.get(f"{BASE}/teams/{team}").data.decode()
    # then the team is open with 1/3 paid, and its members show their orders and states
    assert 'data-state="open"' in row and "1/3" in row
    assert re.search(rf'data-order="{leader["no"]}" data-state="paid"', members)
    assert re.search(rf'data-order="{joiner["no"]}" data-state="joining"', members)
    assert reader.get(f"{BASE}/teams/999999").status_code == 404


def test_a_refund_that_keeps_failing_is_listed_and_retried_now(admin, client, login, fake_pay, run_jobs, shop):
    sku, activity = group_sale(shop, size=3)
    leader = api_group(client, login("fail-lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    finance = admin("finance")
    # given a failed team whose member's refund WeChat Pay refuses three times
    fake_pay.fail_next(3, err_code="SYSTEMERROR", endpoint="refund")
    expire_team(team)
    jobs.close_expired()
    run_jobs()
    for _ in range(2):  # the finance operator asks for the next try now, twice, before it is listed
        finance.post(f"{BASE}/refunds/{leader['id']}/retry", {}, page=f"{BASE}/refunds")
        run_jobs()
    with db.connection_context():
        refund = Refund.get(Refund.order == leader["id"])
    assert (refund.state, refund.attempts) != ("succeeded", 0)
    assert [r for r in fake_pay.refunds if r.out_trade_no == leader["no"]] == []  # the fake is the session's
    # when an operator opens the failing refunds
    page = finance.get(f"{BASE}/refunds").data.decode()
    row = re.search(rf'<tr data-order="{leader["no"]}".*?</tr>', page, re.S).group(0)
    # then the order is listed with its attempts and the retry form
    assert '<td class="attempts">3</td>' in row and "retry-form" in row
    # and a read-only operator may see it but not retry
    reader = admin("readonly")
    assert "retry-form" not in reader.get(f"{BASE}/refunds").data.decode()
    assert reader.post(f"{BASE}/refunds/{leader['id']}/retry", {}, page=f"{BASE}/refunds").status_code == 403
    # when finance retries now and the job runs, WeChat Pay refunds it once and the list empties
    answer = finance.post(f"{BASE}/refunds/{leader['id']}/retry", {}, page=f"{BASE}/refunds")
    assert answer.status_code == 302
    run_jobs()
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == leader["no"]] == [990]
    assert leader["no"] not in finance.get(f"{BASE}/refunds").data.decode()
    assert len(audits("group.refund_retry")) == 3
    # and a retry of a refund that has succeeded is refused with a message
    late = finance.post(f"{BASE}/refunds/{leader['id']}/retry", {}, page=f"{BASE}/refunds")
    assert late.status_code == 302 and len(audits("group.refund_retry")) == 3
    assert "无需重试" in finance.get(f"{BASE}/refunds").data.decode()
