"""The risk admin (issue 15) over real HTTP: the cases queue with its counts and filters, a
case's evidence, every decision through its form (assign, clear, confirm with penalties,
allowlist) with its audit row, the rules with versioned edits, the penalties and allowlist
pages with lift and revoke; every refusal a message on the page with nothing written, every
page closed to roles without the permission."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from models.audit import AuditEntry
from models.db import db
from models.orders import Order
from models.risk_tables import RiskAllow, RiskCase, RiskHit, RiskPenalty, RiskRule
from models.withdrawals import Withdrawal
from tests.factories import risk_case

SHANGHAI = ZoneInfo("Asia/Shanghai")
CASES = "/admin/risk/cases"


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def case_row(case_id: int) -> RiskCase:
    with db.connection_context():
        return RiskCase.get_by_id(case_id)


def held(case_id: int) -> list[bool]:
    with db.connection_context():
        ids = [h.subject_id for h in RiskHit.select().where(RiskHit.subject_kind == "order")]
        return [o.risk_hold for o in Order.select().where(Order.id.in_(ids)).order_by(Order.id)]


def versions(code: str) -> list[int]:
    with db.connection_context():
        return [r.version for r in RiskRule.select().where(RiskRule.code == code).order_by(RiskRule.version)]


def day(days: int) -> str:
    return (dt.datetime.now(SHANGHAI) + dt.timedelta(days=days)).strftime("%Y-%m-%d")


def test_every_page_opens_for_viewers_and_is_closed_to_roles_without_risk_view(admin, rt):
    case_id = risk_case(rt)
    pages = [f"{CASES}/", f"{CASES}/?state=all", f"{CASES}/{case_id}", "/admin/risk/rules/",
             "/admin/risk/rules/burst_orders", "/admin/risk/penalties/", "/admin/risk/allow/"]
    reader, support = admin("readonly"), admin("support")
    for url in pages:
        # then a read-only operator sees each page, without any decision form
        answer = reader.get(url)
        assert answer.status_code == 200, (url, answer.data[:300])
        assert "action_token" not in answer.data.decode(), url
        # and support (no risk.view) is refused
        assert support.get(url).status_code == 403, url
    assert reader.get(f"{CASES}/999999").status_code == 404
    assert reader.get("/admin/risk/rules/no_such_rule").status_code == 404
    assert reader.get(f"{CASES}/?state=bogus").status_code == 404


def test_the_queue_shows_the_case_with_its_counts_and_filters(admin, rt):
    # given an open hold case of two held orders on one creator
    case_id = risk_case(rt, code="circular_buying", orders=2)
    with db.connection_context():
        case = RiskCase.get_by_id(case_id)
    finance = admin("finance")
    page = finance.get(f"{CASES}/").data.decode()
    # then the header counts one open case, two held orders and the commission waiting
    assert re.search(r'id="open-cases">1<', page) and re.search(r'id="held-orders">2<', page)
    assert f'id="held-money">¥{case.held_fen // 100}.{case.held_fen % 100:02d}<' in page
    # and the row names the creator (a link), the outcome, the score and the rules that fired
    row = re.search(rf'<tr data-case="{case_id}".*?</tr>', page, re.S).group(0)
    assert f"/admin/creators/{case.creator_id}" in row and 'data-outcome="hold"' in row
    assert "circular_buying" in row and f'class="score">{case.score}<' in row
    # when it filters on review cases, on cases assigned to it, or on cleared ones: none
    for query in ("outcome=review", "mine=1", "state=cleared"):
        assert f'data-case="{case_id}"' not in finance.get(f"{CASES}/?{query}").data.decode(), query
    # and a page before the case's id is empty (keyset paging)
    assert f'data-case="{case_id}"' not in finance.get(f"{CASES}/?before={case_id}").data.decode()
    assert finance.get(f"{CASES}/?before=abc").status_code == 400


def test_the_case_page_shows_evidence_without_raw_identities(admin, rt):
    # given a case whose orders came from one IP and device, and a withdrawal waiting for review
    case_id = risk_case(rt, ip="10.7.7.7", device="dev-raw-id-42", withdrawal_fen=30_000)
    page = admin("readonly").get(f"{CASES}/{case_id}").data.decode()
    # then the rules, the orders (links to the order pages) and the withdrawal are listed
    assert re.search(r'<tr data-code="circular_buying">', page)
    with db.connection_context():
        order_ids = [h.subject_id for h in RiskHit.select()]
        w = Withdrawal.get()
    for order_id in order_ids:
        assert f'href="/admin/orders/{order_id}"' in page
    assert f'data-withdrawal="{w.id}"' in page
    # and the identities show the /24 and short hashes, never the raw values
    assert "10.7.7" in page and "10.7.7.7" not in page and "dev-raw-id-42" not in page
    # and the graph's data and script are on the page
    assert 'id="risk-graph-data"' in page and "qx/risk_graph.js" in page and "echarts.min.js" in page


def test_assign_to_me_to_a_colleague_and_to_nobody(admin, rt):
    case_id = risk_case(rt)
    finance = admin("finance", "fin-a")
    admin("owner", "boss")
    url = f"{CASES}/{case_id}"
    # when finance takes the case
    assert finance.post(f"{url}/assign", {"to": "me"}, page=url).status_code == 302
    assert case_row(case_id).assignee == "fin-a"
    assert f'data-case="{case_id}"' in finance.get(f"{CASES}/?mine=1").data.decode()
    # when it names an operator who does not exist: a message, nothing written
    bad = finance.post(f"{url}/assign", {"to": "name", "name": "nobody-here"}, page=url)
    assert bad.status_code == 400 and "没有这位在职的操作员" in bad.data.decode()
    assert case_row(case_id).assignee == "fin-a"
    # when it hands the case to the owner, then to nobody
    finance.post(f"{url}/assign", {"to": "name", "name": "boss"}, page=url)
    assert case_row(case_id).assignee == "boss"
    finance.post(f"{url}/assign", {"to": "none"}, page=url)
    assert case_row(case_id).assignee is None
    # then each change is one audit row with the case before and after
    rows = audits("risk.case_assign")
    assert [(e.before["assignee"], e.after["assignee"]) for e in rows] == [(None, "fin-a"), ("fin-a", "boss"),
                                                                            ("boss", None)]


def test_clear_needs_a_note_releases_the_holds_and_cannot_be_done_twice(admin, rt):
    case_id = risk_case(rt)
    finance = admin("finance")
    url = f"{CASES}/{case_id}"
    # when finance clears without a note: a message on the page, nothing written
    bare = finance.post(f"{url}/clear", {"note": " "}, page=url)
    assert bare.status_code == 400 and "请填写处理说明" in bare.data.decode()
    assert case_row(case_id).state == "open" and audits("risk.case_clear") == []
    assert held(case_id) == [True, True]
    # when it clears with a note
    assert finance.post(f"{url}/clear", {"note": "家人共用 WiFi"}, page=url).status_code == 302
    # then the case is cleared, the orders no longer held, one audit row
    assert case_row(case_id).state == "cleared" and held(case_id) == [False, False]
    [entry] = audits("risk.case_clear")
    assert (entry.before["state"], entry.after["state"], entry.reason) == ("open", "cleared", "家人共用 WiFi")
    # and a second decision is refused with a message, nothing more written
    again = finance.post(f"{url}/confirm", {"note": "再确认"}, page=url)
    assert again.status_code == 409 and "已经处理过了" in again.data.decode()
    assert case_row(case_id).state == "cleared" and audits("risk.case_confirm") == []


@pytest.mark.parametrize("fields", [{"suspend_days": "abc"}, {"downgrade_levels": "-1"}, {"suspend_days": "0"}])
def test_confirm_with_a_bad_penalty_is_refused_and_writes_nothing(admin, rt, fields):
    case_id = risk_case(rt)
    url = f"{CASES}/{case_id}"
    answer = admin("finance").post(f"{url}/confirm", {"note": "刷单", **fields}, page=url)
    assert answer.status_code == 400 and "处罚设置无效" in answer.data.decode()
    assert case_row(case_id).state == "open" and audits("risk.case_confirm") == []
    with db.connection_context():
        assert RiskPenalty.select().count() == 0


def test_confirm_with_penalties_then_lift_one_from_the_penalties_page(admin, rt):
    case_id = risk_case(rt)
    finance = admin("finance")
    url = f"{CASES}/{case_id}"
    # when finance confirms with a 7-day withdrawal suspension
    answer = finance.post(f"{url}/confirm", {"note": "确认刷单", "suspend_days": "7"}, page=url)
    assert answer.status_code == 302, answer.data[:500]
    # then the case is confirmed, audited, and the suspension is listed
    assert case_row(case_id).state == "confirmed"
    assert [e.after["state"] for e in audits("risk.case_confirm")] == ["confirmed"]
    with db.connection_context():
        suspension = RiskPenalty.get(RiskPenalty.kind == "suspend_withdrawals")
    page = finance.get("/admin/risk/penalties/").data.decode()
    assert f'data-penalty="{suspension.id}"' in page
    # when it lifts it without a reason: a message, nothing written
    lift = f"/admin/risk/penalties/{suspension.id}/lift"
    bare = finance.post(lift, {"reason": ""}, page="/admin/risk/penalties/")
    assert bare.status_code == 400 and "请填写原因" in bare.data.decode()
    with db.connection_context():
        assert RiskPenalty.get_by_id(suspension.id).lifted_at is None
    # when it lifts it with a reason
    assert finance.post(lift, {"reason": "申诉通过"}, page="/admin/risk/penalties/").status_code == 302
    with db.connection_context():
        assert RiskPenalty.get_by_id(suspension.id).lifted_at is not None
    assert [e.object for e in audits("risk.penalty_lift")] == [f"creator:{suspension.creator_id}"]
    assert f'data-penalty="{suspension.id}"' not in finance.get("/admin/risk/penalties/").data.decode()
    # and lifting it again is refused with a message
    again = finance.post(lift, {"reason": "再解除"}, page="/admin/risk/penalties/")
    assert again.status_code == 409 and "已经解除" in again.data.decode()


@pytest.mark.parametrize("until", ["", "2020-01-01", "not-a-date"])
def test_an_allowlist_without_a_future_end_date_is_refused(admin, rt, until):
    case_id = risk_case(rt)
    url = f"{CASES}/{case_id}"
    answer = admin("finance").post(f"{url}/allowlist", {"note": "老客户", "until": until,
                                                        "codes": "circular_buying"}, page=url)
    assert answer.status_code == 400 and "截止日期" in answer.data.decode()
    assert case_row(case_id).state == "open" and audits("risk.case_allowlist") == []
    with db.connection_context():
        assert RiskAllow.select().count() == 0


def test_allowlist_a_case_then_revoke_the_entry(admin, rt):
    case_id = risk_case(rt)
    creator_id = case_row(case_id).creator_id
    finance = admin("finance")
    url = f"{CASES}/{case_id}"
    # when finance allowlists the creator for circular_buying for 30 days
    answer = finance.post(f"{url}/allowlist", {"note": "线下门店集中下单", "until": day(30),
                                               "codes": "circular_buying"}, page=url)
    assert answer.status_code == 302, answer.data[:500]
    # then the case is allowlisted and the entry is in force until the end of that day
    assert case_row(case_id).state == "allowlisted"
    with db.connection_context():
        entry = RiskAllow.get()
    assert (entry.subject_kind, entry.subject_id, entry.rule_code) == ("creator", creator_id, "circular_buying")
    assert dt.timedelta(days=29) < entry.until - dt.datetime.now(dt.UTC).replace(tzinfo=None) <= dt.timedelta(days=31)
    assert len(audits("risk.case_allowlist")) == 1
    page = finance.get("/admin/risk/allow/").data.decode()
    assert f'data-allow="{entry.id}"' in page
    # when it revokes the entry with a reason
    revoke = f"/admin/risk/allow/{entry.id}/revoke"
    assert finance.post(revoke, {"reason": "门店已关闭"}, page="/admin/risk/allow/").status_code == 302
    with db.connection_context():
        assert RiskAllow.get_by_id(entry.id).revoked_at is not None
    assert len(audits("risk.allow_revoke")) == 1
    assert f'data-allow="{entry.id}"' not in finance.get("/admin/risk/allow/").data.decode()


def test_the_owner_edits_a_rule_into_a_new_version_with_history(admin, rt):
    owner = admin("owner")
    url = "/admin/risk/rules/burst_orders"
    # when the owner raises the burst threshold and its weight
    answer = owner.post(f"{url}/edit", {"params": '{"min_orders": 20, "minutes": 10}', "weight": "60",
                                        "enabled": "1", "reason": "大促期间放宽"}, page=url)
    assert answer.status_code == 302, answer.data[:500]
    # then version 2 is in force, the list and history show it, and the audit row has both
    assert versions("burst_orders") == [1, 2]
    rules = owner.get("/admin/risk/rules/").data.decode()
    assert re.search(r'<tr data-rule="burst_orders" data-version="2"', rules)
    history = owner.get(url).data.decode()
    assert 'data-version="1"' in history and 'data-version="2"' in history
    [entry] = audits("risk.rule_update")
    assert (entry.before["version"], entry.before["params"]["min_orders"]) == (1, 10)
    assert (entry.after["version"], entry.after["params"]["min_orders"], entry.after["weight"]) == (2, 20, 60)
    # and a blocking rule can be made non-blocking, an order rule never blocking
    owner.post("/admin/risk/rules/coupon_farming/edit", {"params": '{"max_accounts": 3, "hours": 24}',
                                                         "weight": "100", "enabled": "1", "blocking_shown": "1",
                                                         "reason": "先观察"}, page=url)
    with db.connection_context():
        assert RiskRule.get(RiskRule.code == "coupon_farming", RiskRule.version == 2).blocking is False
    refused = owner.post(f"{url}/edit", {"params": "{}", "weight": "60", "enabled": "1", "blocking_shown": "1",
                                         "blocking": "1", "reason": "试试拦截"}, page=url)
    assert refused.status_code == 400 and "只有领券、助力、参团规则可以设为拦截" in refused.data.decode()
    assert versions("burst_orders") == [1, 2]


@pytest.mark.parametrize("params, weight, text", [
    ("{not json", "50", "JSON"),
    ('["min_orders"]', "50", "JSON"),
    ('{"min_orders": -3}', "50", "参数无效"),
    ('{"minutes": 100000}', "50", "参数无效"),
    ('{"surprise": 1}', "50", "参数无效"),
    ('{"min_orders": 10}', "-5", "权重"),
    ('{"min_orders": 10}', "lots", "权重"),
])
def test_a_bad_rule_edit_is_a_message_and_writes_nothing(admin, rt, params, weight, text):
    url = "/admin/risk/rules/burst_orders"
    answer = admin("owner").post(f"{url}/edit", {"params": params, "weight": weight, "enabled": "1",
                                                 "reason": "测试"}, page=url)
    assert answer.status_code == 400 and text in answer.data.decode()
    assert versions("burst_orders") == [1] and audits("risk.rule_update") == []


def test_an_unknown_rule_code_is_refused_with_a_message(admin, rt):
    answer = admin("owner").post("/admin/risk/rules/no_such_rule/edit", {"params": "{}", "weight": "5",
                                                                         "reason": "测试"}, page="/admin/risk/rules/")
    assert answer.status_code == 400 and "没有这条风控规则" in answer.data.decode()
    assert audits("risk.rule_update") == []


def test_roles_without_the_permission_are_refused_and_nothing_changes(admin, rt):
    case_id = risk_case(rt)
    url = f"{CASES}/{case_id}"
    reader, finance = admin("readonly"), admin("finance")
    # a read-only operator may decide nothing; finance may decide but not edit rules
    for path, data in ((f"{url}/assign", {"to": "me"}), (f"{url}/clear", {"note": "x放行"}),
                       (f"{url}/confirm", {"note": "x确认"}),
                       (f"{url}/allowlist", {"note": "x", "until": day(5), "codes": "circular_buying"}),
                       ("/admin/risk/penalties/1/lift", {"reason": "解除"}),
                       ("/admin/risk/allow/1/revoke", {"reason": "撤销"})):
        assert reader.post(path, data, page=url).status_code == 403, path
    rule = "/admin/risk/rules/burst_orders/edit"
    form = {"params": '{"min_orders": 11}', "weight": "50", "enabled": "1", "reason": "改"}
    assert reader.post(rule, form, page=url).status_code == 403
    assert finance.post(rule, form, page=url).status_code == 403
    assert case_row(case_id).state == "open" and case_row(case_id).assignee is None
    assert versions("burst_orders") == [1]
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action.startswith("risk.")).count() == 0


def test_a_form_sent_twice_acts_once(admin, rt):
    case_id = risk_case(rt)
    finance = admin("finance")
    url = f"{CASES}/{case_id}"
    token = re.search(r'name="action_token" value="([^"]+)"', finance.get(url).data.decode()).group(1)
    first = finance.post(f"{url}/assign", {"to": "me", "action_token": token}, page=url)
    second = finance.post(f"{url}/assign", {"to": "none", "action_token": token}, page=url)
    assert first.status_code == second.status_code == 302
    assert case_row(case_id).assignee == finance.op.name and len(audits("risk.case_assign")) == 1


def test_the_pages_speak_english_too(admin, rt):
    case_id = risk_case(rt)
    reader = admin("readonly")
    reader.client.post("/admin/lang", data={"lang": "en", "next": "/admin/",
                                            "csrf_token": reader.csrf("/admin/")})
    queue = reader.get(f"{CASES}/").data.decode()
    assert "Risk cases" in queue and "Held commission" in queue
    assert "Rules that fired" in reader.get(f"{CASES}/{case_id}").data.decode()
