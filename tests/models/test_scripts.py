"""Scripts as rows (models/scripts.py) and the review path: a creator's style remembered; a
draft submitted through the AI check (content_ai.scripts.submit_script) waits in the queue; an
operator approves or rejects with a note; the creator is told in chat through the outbox; a
decided script stays decided; another creator's script is a missing one."""

from __future__ import annotations

import pytest

from content_ai import scripts as content
from models import scripts
from models.errors import InvalidInput, InvalidState, NotFound
from tests.factories import creator, described_sku, linked, outbox_rows


@pytest.fixture
def draft(rt, shop, conn):  # noqa: ANN001, ANN201
    """Mei (reachable on Telegram) and her draft script for VIP-M."""
    described_sku(shop)
    mei = creator(name="小美")
    linked(mei.user, telegram="7001")
    return content.create_script(mei, "VIP-M", "夏日追剧", settings=rt.settings)


def test_style_is_remembered_and_validated(rt, conn):
    mei = creator(name="小美")
    assert scripts.style_of(mei) == ""
    assert scripts.set_style(mei, "  亲切\t幽默 ") == "亲切 幽默"
    assert scripts.set_style(mei.id, "专业") == "专业"  # replaced, not added
    assert scripts.style_of(mei) == "专业" and scripts.ContentStyle.select().count() == 1
    # longer than 20 characters as typed: refused, nothing changes
    with pytest.raises(InvalidInput) as refused:
        scripts.set_style(mei, "风" * 21)
    assert refused.value.code == "invalid_style" and scripts.style_of(mei) == "专业"
    # NFKC may lengthen a style: cut to 20
    assert len(scripts.set_style(mei, "㍿" * 20)) == 20
    # blank (after controls are dropped): cleared
    for blank in ("", "   ", "\x00\x01"):
        scripts.set_style(mei, "亲切")
        assert scripts.set_style(mei, blank) == "" and scripts.style_of(mei) == ""


def test_submit_then_approve_tells_the_creator(rt, draft):
    # given Mei's draft
    assert draft.state == "draft"
    # when she submits it
    submitted = content.submit_script(draft.creator, draft.id, settings=rt.settings)
    # then it waits for review, with the AI check done
    assert submitted.state == "submitted" and submitted.submitted_at is not None
    assert [s.id for s in scripts.list_for(None, state="submitted")] == [draft.id]
    assert scripts.counts()["submitted"] == 1
    # when an operator approves it with a note
    approved = scripts.review(draft.id, approve=True, reviewer="operator:1", note="可以发布")
    # then it is approved, the reviewer recorded, and Mei is told on Telegram
    assert (approved.state, approved.reviewer, approved.note) == ("approved", "operator:1", "可以发布")
    sent = outbox_rows(f"script:{draft.id}:")
    assert len(sent) == 1 and sent[0].platform == "telegram" and sent[0].chat_id == "7001"
    assert "已通过审核" in sent[0].payload["text"] and "【广告】" in sent[0].payload["text"]
    # and a decided script cannot be decided or submitted again
    with pytest.raises(InvalidState):
        scripts.review(draft.id, approve=False, reviewer="operator:2", note="改主意了")
    with pytest.raises(InvalidState):
        content.submit_script(draft.creator, draft.id, settings=rt.settings)
    assert len(outbox_rows(f"script:{draft.id}:")) == 1


def test_reject_needs_a_note_and_tells_the_reason(rt, draft):
    content.submit_script(draft.creator, draft.id, settings=rt.settings)
    # a rejection without a reason is refused, nothing changes
    with pytest.raises(InvalidInput) as refused:
        scripts.review(draft.id, approve=False, reviewer="operator:1", note=" ")
    assert refused.value.code == "note_required" and scripts.get(draft.id).state == "submitted"
    # with a reason: rejected, and the creator is told why
    scripts.review(draft.id, approve=False, reviewer="operator:1", note="卖点与商品不符")
    assert scripts.get(draft.id).state == "rejected"
    (notice,) = outbox_rows(f"script:{draft.id}:")
    assert "未通过审核" in notice.payload["text"] and "卖点与商品不符" in notice.payload["text"]


def test_a_draft_cannot_be_reviewed_and_others_scripts_are_missing(rt, draft):
    with pytest.raises(InvalidState):
        scripts.review(draft.id, approve=True, reviewer="operator:1", note="")
    other = creator(name="阿杰")
    with pytest.raises(NotFound):
        scripts.get(draft.id, other)
    with pytest.raises(NotFound):
        content.submit_script(other, draft.id, settings=rt.settings)
    with pytest.raises(NotFound):
        scripts.get(2**63 + 5)
    assert scripts.get(draft.id).state == "draft"


def test_an_unreachable_creator_is_reviewed_without_a_message(rt, shop, conn):
    described_sku(shop)
    jie = creator(name="阿杰")  # no chat identity
    row = content.create_script(jie, "VIP-M", "", settings=rt.settings)
    content.submit_script(jie, row.id, settings=rt.settings)
    assert scripts.review(row.id, approve=True, reviewer="operator:1", note="").state == "approved"
    assert outbox_rows(f"script:{row.id}:") == []


def test_a_blocked_submission_is_rejected_at_once(rt, draft):
    # given the AI check blocks the script (submit's `blocked`, as content_ai.moderation decides)
    row = scripts.submit(draft.id, draft.creator_id, decision_id=None, blocked=True)
    # then it is rejected by moderation without waiting in the queue, and the creator is told
    assert (row.state, row.reviewer) == ("rejected", "moderation")
    assert scripts.list_for(None, state="submitted") == []
    assert len(outbox_rows(f"script:{draft.id}:rejected")) == 1


def test_lists_are_newest_first_and_paged(rt, draft):
    more = [content.create_script(draft.creator, "VIP-M", f"主题{i}", settings=rt.settings) for i in range(3)]
    ids = [draft.id] + [m.id for m in more]
    first = scripts.list_for(draft.creator, limit=2)
    assert [s.id for s in first] == ids[::-1][:2]
    rest = scripts.list_for(draft.creator, limit=2, before_id=first[-1].id)
    assert [s.id for s in rest] == ids[::-1][2:]
    assert scripts.list_for(creator(name="别人")) == []
