"""The live dashboard in the admin, through the real HTTP interface: the list, a session's page
and its 2-second JSON, and the audited actions (reconcile now, close a poll, edit a hint rule)
for `live.manage`; `live.view` reads only."""

from __future__ import annotations

from models import live_dashboard, live_hints, live_votes
from models.audit import AuditEntry
from models.db import db, utcnow
from models.live_dashboard import LiveSessionStats
from models.live_hints import LiveHintRule
from tests.factories import end_session, live_sale, on_air

BASE = "/admin/live/dashboard"


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action))


def test_the_list_the_page_and_its_json(admin, rt, shop, run_jobs):
    # given a session live now with a viewer and a sale, and one that ended
    host, sid = on_air(title="周五福利")
    card = shop.card_sku(keys=3, price=1990)
    with db.connection_context():
        live_dashboard.entered(rt.redis, sid, 42, utcnow())
    live_sale(card, host, sid, "admin-buyer")
    run_jobs()
    other, ended = on_air(title="上一场")
    end_session(other, ended)
    reader = admin("readonly")  # live.view only
    # when the operator opens the list, the session's page and its JSON
    listing = reader.get(f"{BASE}/")
    page = reader.get(f"{BASE}/{sid}")
    data = reader.get(f"{BASE}/{sid}/data.json")
    # then the live session and the ended one are listed, and the figures are on both
    assert listing.status_code == 200 and f'data-session="{sid}"'.encode() in listing.data
    assert f'data-session="{ended}"'.encode() in listing.data
    assert page.status_code == 200 and "周五福利".encode() in page.data and b'id="fig-orders">1<' in page.data
    assert b"reconcile-form" not in page.data  # a reader may not act
    assert data.json["orders"] == 1 and data.json["gmv_fen"] == 1990 and data.json["online"] == 1
    assert isinstance(data.json["history"], list) and len(data.json["history"]) == 1
    # and an unknown session is a 404 page
    assert reader.get(f"{BASE}/987654").status_code == 404


def test_the_session_page_is_linked_from_the_live_sessions_admin(admin, app):
    from miniapp_api.admin.live import dashboard_url

    with app.test_request_context():
        assert dashboard_url(7) == f"{BASE}/7"


def test_reconcile_now_is_audited(admin, rt, shop, run_jobs):
    # given an ended session with a sale
    host, sid = on_air()
    live_sale(shop.card_sku(keys=2, price=800), host, sid, "r-buyer")
    run_jobs()
    end_session(host, sid)
    ops = admin("ops")
    # when an operator reconciles it now
    answer = ops.post(f"{BASE}/{sid}/reconcile", {"reason": "check"}, page=f"{BASE}/{sid}")
    # then the final figures are stored and the action is audited
    assert answer.status_code == 302
    with db.connection_context():
        assert LiveSessionStats.get_by_id(sid).gmv_fen == 800
    assert [a.object for a in audits("live.dashboard_reconcile")] == [f"live:{sid}"]


def test_an_operator_closes_a_poll_with_a_reason(admin, rt):
    host, sid = on_air()
    with db.connection_context():
        poll = live_votes.open_poll(host, sid, live_votes.parse_poll("Q", ["A", "B"]))
    ops = admin("ops")
    page = f"{BASE}/{sid}"
    # without a reason nothing happens
    ops.post(f"{BASE}/polls/{poll.id}/close", {"reason": ""}, page=page)
    with db.connection_context():
        assert live_votes.results(poll.id)["closed"] is False
    # with one, the poll closes and the operator's action is audited
    assert ops.post(f"{BASE}/polls/{poll.id}/close", {"reason": "违规内容"}, page=page).status_code == 302
    with db.connection_context():
        assert live_votes.results(poll.id)["closed"] is True
    assert [a.reason for a in audits("live.poll_close")] == ["违规内容"]


def test_edit_a_hint_rule_and_a_bad_edit_changes_nothing(admin, rt):
    with db.connection_context():
        live_hints.seed_defaults()
        rule = LiveHintRule.get(LiveHintRule.code == "low_conversion")
    ops = admin("ops")
    page = f"{BASE}/rules"
    assert b'data-rule="low_conversion"' in ops.get(page).data
    form = {"metric": "conversion_bp", "op": "<", "threshold": "150", "for_s": "600", "min_viewers": "30",
            "text": "转化低，上福利", "enabled": "1", "reason": "调阈值"}
    # when the operator lowers the threshold
    assert ops.post(f"{BASE}/rules/{rule.id}", form, page=page).status_code == 302
    with db.connection_context():
        saved = LiveHintRule.get_by_id(rule.id)
    assert (saved.threshold, saved.for_s, saved.text, saved.enabled) == (150, 600, "转化低，上福利", True)
    entry = audits("live.hint_rule_update")[0]
    assert entry.after["before"]["threshold"] == 200 and entry.after["after"]["threshold"] == 150
    # when a bad value is sent (and the rule switched off in the same form), nothing changes
    answer = ops.post(f"{BASE}/rules/{rule.id}", {**form, "for_s": "ten", "enabled": "0"}, page=page,
                      follow_redirects=True)
    assert b"for_s" in answer.data
    with db.connection_context():
        assert LiveHintRule.get_by_id(rule.id).enabled is True
    assert len(audits("live.hint_rule_update")) == 1


def test_the_pages_speak_english_when_chosen(admin, rt):
    _, sid = on_air()
    reader = admin("readonly")
    reader.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    for url, text in ((f"{BASE}/{sid}", b"Live dashboard"), (f"{BASE}/rules", b"Live hint rules"),
                      (f"{BASE}/", b"Recently ended")):
        answer = reader.get(url)
        assert answer.status_code == 200 and text in answer.data, url
