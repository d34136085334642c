"""The scripts admin over real HTTP (menu 内容): generate a script for a creator, the list, the
review queue, approve / reject with a note — audited, the creator told in chat, refused with a
message and nothing written on bad input, refused by role."""

from __future__ import annotations

import re

import pytest

from content_ai import scripts as content
from models import scripts
from models.audit import AuditEntry
from models.db import db
from tests.factories import creator, described_sku, linked, outbox_rows

BASE = "/admin/content/scripts"
QUEUE = "/admin/content/script-review/"


@pytest.fixture
def mei(rt, shop):  # noqa: ANN001, ANN201
    described_sku(shop)
    made = creator(name="小美")
    linked(made.user, telegram="7002")
    return made


@pytest.fixture
def submitted(rt, mei):  # noqa: ANN001, ANN201
    with db.connection_context():
        row = content.create_script(mei, "VIP-M", "夏日追剧", settings=rt.settings)
        return content.submit_script(mei, row.id, settings=rt.settings)


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def all_scripts() -> list[scripts.ContentScript]:
    with db.connection_context():
        return list(scripts.ContentScript.select().order_by(scripts.ContentScript.id))


def test_ops_generate_a_script_for_a_creator(admin, mei):
    ops = admin("ops")
    # when ops generate one for Mei's code, a SKU and a topic
    resp = ops.post(f"{BASE}/new", {"creator": mei.code, "sku": "VIP-M", "topic": "夏日追剧", "style": "专业"},
                    page=f"{BASE}/")
    # then a draft of Mei's, and the script's page shows its three variants
    (row,) = all_scripts()
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"{BASE}/{row.id}")
    assert (row.creator_id, row.state, row.style, row.created_by) == (mei.id, "draft", "专业", f"operator:{ops.op.id}")
    page = ops.get(f"{BASE}/{row.id}").data.decode()
    assert "【广告】夏日追剧·视频会员月卡" in page and page.count('class="card mb-3 variant"') == 3
    assert "¥19.90" in page and "00:00:00,000" in page
    # and the list shows it; the action is audited with the script after
    listed = ops.get(f"{BASE}/").data.decode()
    assert f'data-script="{row.id}"' in listed and mei.code in listed
    (entry,) = audits("script.generate")
    assert entry.object == f"creator:{mei.code}" and entry.after["script"] == row.id


@pytest.mark.parametrize("form, message", [
    ({"creator": "NOBODY", "sku": "VIP-M"}, "没有这个达人邀请码"),
    ({"sku": "NOPE"}, "没有这个商品编码"),
    ({"sku": "VIP-M", "topic": "很长的主题" * 10}, "主题太长了"),
    ({"sku": "VIP-M", "style": "风" * 21}, "风格最多 20 个字"),
])
def test_a_bad_generate_form_gets_a_message_and_writes_nothing(admin, mei, form, message):
    ops = admin("ops")
    resp = ops.post(f"{BASE}/new", {"creator": mei.code, **form}, page=f"{BASE}/")
    assert resp.status_code in (400, 404) and message in resp.data.decode()
    assert all_scripts() == [] and audits("script.generate") == []


def test_the_queue_and_approval(admin, submitted, telegram, run_jobs):
    ops = admin("ops")
    # given Mei's submitted script / then it waits in the queue
    queue = ops.get(QUEUE).data.decode()
    assert f'data-script="{submitted.id}"' in queue and "夏日追剧" in queue
    page = ops.get(f"{BASE}/{submitted.id}").data.decode()
    assert 'id="review"' in page
    # when ops approve it with a note
    resp = ops.post(f"{BASE}/{submitted.id}/approve", {"note": "可以发布"}, page=f"{BASE}/{submitted.id}")
    # then it is approved by them, audited with before and after, and Mei is told on Telegram
    assert resp.status_code == 302
    with db.connection_context():
        row = scripts.get(submitted.id)
    assert (row.state, row.reviewer, row.note) == ("approved", ops.op.name, "可以发布")
    (entry,) = audits("script.approve")
    assert entry.before["state"] == "submitted" and entry.after["state"] == "approved" and entry.reason == "可以发布"
    (notice,) = outbox_rows(f"script:{submitted.id}:")
    assert notice.chat_id == "7002" and "已通过审核" in notice.payload["text"]
    run_jobs()  # the drain the approval queued
    assert any("已通过审核" in m.text for m in telegram.sent_to("7002"))
    # and it has left the queue; deciding again is a message, nothing more written
    assert f'data-script="{submitted.id}"' not in ops.get(QUEUE).data.decode()
    again = ops.post(f"{BASE}/{submitted.id}/reject", {"note": "改主意了"}, page=f"{BASE}/{submitted.id}")
    assert again.status_code == 409 and "不在待审核状态" in again.data.decode()
    assert audits("script.reject") == [] and len(outbox_rows(f"script:{submitted.id}:")) == 1


def test_a_rejection_needs_a_note(admin, submitted):
    owner = admin("owner")
    resp = owner.post(f"{BASE}/{submitted.id}/reject", {"note": " "}, page=f"{BASE}/{submitted.id}")
    assert resp.status_code == 400 and "驳回需要填写原因" in resp.data.decode()
    assert audits("script.reject") == []
    resp = owner.post(f"{BASE}/{submitted.id}/reject", {"note": "卖点与商品不符"}, page=f"{BASE}/{submitted.id}")
    assert resp.status_code == 302
    with db.connection_context():
        assert scripts.get(submitted.id).state == "rejected"
    assert len(audits("script.reject")) == 1
    assert "卖点与商品不符" in outbox_rows(f"script:{submitted.id}:")[0].payload["text"]


@pytest.mark.parametrize("role", ["readonly", "finance"])
def test_roles_without_content_review_or_manage_are_refused(admin, submitted, mei, role):
    op = admin(role)
    # they may look
    assert op.get(QUEUE).status_code == 200
    page = op.get(f"{BASE}/{submitted.id}").data.decode()
    assert 'id="review"' not in page and 'id="new-script"' not in op.get(f"{BASE}/").data.decode()
    # but not decide or generate
    assert op.post(f"{BASE}/{submitted.id}/approve", {"note": "x"}, page=f"{BASE}/").status_code == 403
    assert op.post(f"{BASE}/{submitted.id}/reject", {"note": "不行"}, page=f"{BASE}/").status_code == 403
    assert op.post(f"{BASE}/new", {"creator": mei.code, "sku": "VIP-M"}, page=f"{BASE}/").status_code == 403
    with db.connection_context():
        assert scripts.get(submitted.id).state == "submitted"
    assert len(all_scripts()) == 1 and audits("script.approve") == []


def test_support_cannot_open_the_pages(admin, submitted):
    support = admin("support")
    assert support.get(f"{BASE}/").status_code == 403 and support.get(QUEUE).status_code == 403


def test_filters_and_bad_ids(admin, submitted):
    ops = admin("ops")
    assert f'data-script="{submitted.id}"' in ops.get(f"{BASE}/?state=submitted").data.decode()
    assert f'data-script="{submitted.id}"' not in ops.get(f"{BASE}/?state=draft").data.decode()
    assert f'data-script="{submitted.id}"' not in ops.get(f"{BASE}/?creator=NOBODY").data.decode()
    assert ops.get(f"{BASE}/?state=bogus").status_code == 404
    assert ops.get(f"{BASE}/?before=abc").status_code == 400
    assert ops.get(f"{BASE}/999999").status_code == 404
    assert ops.post(f"{BASE}/999999/approve", {"note": "x"}, page=f"{BASE}/").status_code == 404
    assert re.search(r'data-state="submitted">\D*1', ops.get(f"{BASE}/").data.decode())


def test_the_pages_in_english(admin, submitted):
    ops = admin("ops")
    ops.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    listed = ops.get(f"{BASE}/").get_data(as_text=True)
    assert "Generate a script for a creator" in listed and "Review queue" in listed
    page = ops.get(f"{BASE}/{submitted.id}").get_data(as_text=True)
    assert "15 s version" in page and "Approve" in page and "Reject" in page
    assert "No scripts waiting for review" not in ops.get(QUEUE).get_data(as_text=True)
