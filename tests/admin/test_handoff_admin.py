"""The admin's hand-off pages (/admin/content/handoff/) through the real HTTP interface: open
cases listed, an operator's answer (audited) reaching the asker's chat through the sender's drain
job with the chat then silent, closing, refusals (empty answer, answered twice) as messages on
the page, and roles: readonly sees but may not act (403, nothing changes), support acts."""

from __future__ import annotations

import re

from bots.commands.handoff_flow import quiet_key
from models.audit import AuditEntry
from models.db import db
from models.handoff import HandoffCase
from tests.bots.conftest import say
from tests.factories import outbox_rows

PAGE = "/admin/content/handoff/"



def asked(who: str = "amy", text: str = "我要投诉，订单有问题") -> HandoffCase:
    """A shopper hands a question off in a private chat (through the real core)."""
    assert "已转给人工" in "".join(r.text for r in say(text, who=who))
    with db.connection_context():
        return HandoffCase.get((HandoffCase.chat_key == f"console:{who}") & (HandoffCase.state == "open"))


def state_of(case_id: int) -> HandoffCase:
    with db.connection_context():
        return HandoffCase.get_by_id(case_id)


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def test_open_cases_are_listed_and_an_answer_reaches_the_asker(admin, rt, run_jobs):  # noqa: ANN001
    # given two hand-offs, one of them answered already
    case = asked("amy")
    other = asked("bob", "转人工")
    owner = admin("owner")
    # when the operator opens the list / then the open cases are there with their question
    page = owner.get(PAGE).get_data(as_text=True)
    assert f'data-case="{case.id}"' in page and f'data-case="{other.id}"' in page and "我要投诉" in page
    # when she answers one from its page
    detail = f"{PAGE}{case.id}"
    assert 'id="answer-form"' in owner.get(detail).get_data(as_text=True)
    answer = owner.post(f"{PAGE}{case.id}/answer", {"answer": "您好，已为您补发，请查看卡券。"}, page=detail)
    # then the case is answered, audited with before and after, and the chat is silent
    assert answer.status_code == 302
    done = state_of(case.id)
    assert (done.state, done.answer, done.answered_by) == ("answered", "您好，已为您补发，请查看卡券。",
                                                           f"operator:{owner.op.id}")
    [entry] = audits("handoff.answer")
    assert entry.object == f"handoff_case:{case.id}" and entry.before["state"] == "open"
    assert entry.after["state"] == "answered"
    assert rt.redis.exists(quiet_key("console:amy"))
    # and the sender's drain job delivers it to amy's private chat
    assert len(outbox_rows(f"handoff:{case.id}:answer")) == 1
    run_jobs()
    assert any("已为您补发" in m.payload.get("text", "") and m.chat_id == "amy" for m in rt.sender.console.sent)
    # and the open list no longer shows it, the answered one does
    assert f'data-case="{case.id}"' not in owner.get(PAGE).get_data(as_text=True)
    assert f'data-case="{case.id}"' in owner.get(f"{PAGE}?state=answered").get_data(as_text=True)


def test_refusals_are_messages_on_the_page(admin, rt):  # noqa: ANN001
    case = asked()
    owner = admin("owner")
    detail = f"{PAGE}{case.id}"
    # an empty answer
    empty = owner.post(f"{PAGE}{case.id}/answer", {"answer": "  "}, page=detail)
    assert empty.status_code == 400 and "回复内容不能为空" in empty.get_data(as_text=True)
    assert state_of(case.id).state == "open" and audits("handoff.answer") == []
    # answered, then answered again from a stale page
    assert owner.post(f"{PAGE}{case.id}/answer", {"answer": "好的"}, page=detail).status_code == 302
    twice = owner.post(f"{PAGE}{case.id}/answer", {"answer": "再答"}, page=PAGE)
    assert twice.status_code == 409 and "已经回复或关闭" in twice.get_data(as_text=True)
    assert state_of(case.id).answer == "好的" and len(outbox_rows(f"handoff:{case.id}")) == 1
    # unknown cases and filters
    assert owner.get(f"{PAGE}999999").status_code == 404
    assert owner.post(f"{PAGE}999999/answer", {"answer": "好"}, page=PAGE).status_code == 404
    assert owner.get(f"{PAGE}?state=nope").status_code == 404
    assert owner.get(f"{PAGE}?before=x").status_code == 400


def test_close_is_audited(admin, rt):  # noqa: ANN001
    case = asked()
    ops = admin("ops")
    closed = ops.post(f"{PAGE}{case.id}/close", {"reason": "用户已自行解决"}, page=f"{PAGE}{case.id}")
    assert closed.status_code == 302 and state_of(case.id).state == "closed"
    [entry] = audits("handoff.close")
    assert entry.reason == "用户已自行解决" and entry.after["state"] == "closed"
    again = ops.post(f"{PAGE}{case.id}/close", {}, page=f"{PAGE}{case.id}")
    assert again.status_code == 409


def test_readonly_sees_but_may_not_act_and_support_acts(admin, rt):  # noqa: ANN001
    case = asked()
    readonly = admin("readonly")
    # readonly sees the case without the forms
    page = readonly.get(f"{PAGE}{case.id}").get_data(as_text=True)
    assert "我要投诉" in page and 'id="answer-form"' not in page and 'id="close-form"' not in page
    # and her posts are refused before anything changes
    assert readonly.post(f"{PAGE}{case.id}/answer", {"answer": "好"}, page=PAGE).status_code == 403
    assert readonly.post(f"{PAGE}{case.id}/close", {}, page=PAGE).status_code == 403
    assert state_of(case.id).state == "open" and audits("handoff.answer") == [] and audits("handoff.close") == []
    # support (hand-offs, no other content page) sees the list and answers
    support = admin("support")
    assert re.search(rf'data-case="{case.id}"', support.get(PAGE).get_data(as_text=True))
    assert support.post(f"{PAGE}{case.id}/answer", {"answer": "已处理"}, page=PAGE).status_code == 302
    assert state_of(case.id).state == "answered"


def test_not_signed_in_goes_to_the_login(client, rt):  # noqa: ANN001
    assert client.get(PAGE).status_code == 302


def test_the_pages_speak_english_too(admin, rt):  # noqa: ANN001
    case = asked()
    owner = admin("owner")
    owner.client.post("/admin/lang", data={"lang": "en", "next": "/admin/", "csrf_token": owner.csrf("/admin/")})
    listing = owner.get(PAGE).get_data(as_text=True)
    assert "Hand-offs" in listing and "Routed to" in listing and "人工转接" not in listing
    detail = owner.get(f"{PAGE}{case.id}").get_data(as_text=True)
    assert "Send the answer" in detail and "Why it was handed off" in detail
