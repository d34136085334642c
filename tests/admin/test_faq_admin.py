"""The FAQ in the admin (miniapp_api/admin/faq.py, issue 16): listed for content viewers,
added, edited and disabled by content managers over real HTTP, once per form, audited; a bad
form gets a message on the page and changes nothing."""

from __future__ import annotations

import pytest

from models import faq
from models.audit import AuditEntry
from models.db import db

PAGE = "/admin/content/faq/"


@pytest.fixture
def entries(rt):  # noqa: ANN001, ANN201
    yield


def rows() -> dict[str, tuple[str, str, bool]]:
    with db.connection_context():
        return {e.question: (e.answer, e.keywords, e.enabled) for e in faq.all_entries()}


def test_a_manager_adds_edits_and_disables_an_entry(admin, entries):
    ops = admin("ops")
    # when ops adds an entry
    answer = ops.post(f"{PAGE}new", {"question": "可以用花呗吗？", "answer": "目前只支持微信支付。",
                                     "keywords": "花呗，分期", "position": "5"}, page=PAGE)
    assert answer.status_code == 302
    assert rows()["可以用花呗吗？"] == ("目前只支持微信支付。", "花呗 分期", True)
    with db.connection_context():
        made = faq.Faq.get(faq.Faq.question == "可以用花呗吗？")
    assert made.updated_by == ops.op.name
    # and edits it, then disables it
    assert ops.post(f"{PAGE}{made.id}/edit", {"question": "可以用花呗吗？", "answer": "暂不支持花呗。",
                                              "keywords": "花呗", "position": "5", "enabled": "1"},
                    page=PAGE).status_code == 302
    assert ops.post(f"{PAGE}{made.id}/disable", {}, page=PAGE).status_code == 302
    # then each change is made and audited with its before and after
    assert rows()["可以用花呗吗？"] == ("暂不支持花呗。", "花呗", False)
    with db.connection_context():
        audit = list(AuditEntry.select().where(AuditEntry.action.startswith("faq.")).order_by(AuditEntry.id))
    assert [(a.action, a.object) for a in audit] == [
        ("faq.create", "faq:new"), ("faq.update", f"faq:{made.id}"), ("faq.disable", f"faq:{made.id}")]
    assert audit[1].before["answer"] == "目前只支持微信支付。" and audit[1].after["answer"] == ["目前只支持微信支付。",
                                                                                              "暂不支持花呗。"]
    # and the page lists it as disabled
    page = ops.get(PAGE).data.decode()
    assert f'data-faq="{made.id}" data-enabled="0"' in page


def test_bad_forms_get_a_message_and_change_nothing(admin, entries):
    ops = admin("ops")
    before = rows()
    taken = faq.DEFAULTS[0][0]
    for url, form, message in (
            ("new", {"question": "", "answer": "答"}, "问题为 1-200 个字"),
            ("new", {"question": "问", "answer": ""}, "答案为 1-1000 个字"),
            ("new", {"question": "问", "answer": "答", "position": "abc"}, "排序应为"),
            ("new", {"question": taken, "answer": "答"}, "已有相同的问题"),
            ("new", {"question": "问" * 300, "answer": "答"}, "问题为 1-200 个字"),
            (f"{10**6}/edit", {"question": "问", "answer": "答"}, "问答不存在"),
            (f"{10**6}/disable", {}, "问答不存在")):
        answer = ops.post(f"{PAGE}{url}", form, page=PAGE)
        assert answer.status_code in (400, 404, 409), (url, form)
        assert message in answer.data.decode(), (url, form)
    assert rows() == before
    # a rejected new entry keeps what the operator typed
    answer = ops.post(f"{PAGE}new", {"question": "我的问题", "answer": "", "keywords": "词"}, page=PAGE)
    assert 'value="我的问题"' in answer.data.decode()


def test_viewers_see_without_forms_and_support_sees_nothing(admin, entries):
    viewer = admin("readonly")
    page = viewer.get(PAGE)
    assert page.status_code == 200 and faq.DEFAULTS[0][0] in page.data.decode()
    assert 'id="new-faq"' not in page.data.decode()
    assert viewer.post(f"{PAGE}new", {"question": "问", "answer": "答"}, page=PAGE).status_code == 403
    assert admin("support").get(PAGE).status_code == 403
    assert "问" not in rows()
