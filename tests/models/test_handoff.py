"""Hand-off cases on both backends: one open case per chat that later hand-offs append to, the
routing (a group's linked creator, else the operators), the creator's notice and the answer as
outbox rows, the states (open -> answered -> closed, each once), who may answer, bad input."""

from __future__ import annotations

import pytest

from models import handoff
from models.chat import GroupConfig, OutboundMessage
from models.db import db
from models.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.handoff import HandoffCase
from tests.factories import buyer, chat_user, creator, handoff_case, linked, outbox_rows


def _case(case_id: int) -> HandoffCase:
    with db.connection_context():
        return HandoffCase.get_by_id(case_id)


def _linked_group(chat_key: str = "console:grp-h"):  # noqa: ANN202
    """A group whose config links a creator reachable in a console private chat."""
    host_user = chat_user("console", "host", name="主播")
    host = creator(user=host_user, rank=1)
    with db.connection_context():
        GroupConfig.create(chat_key=chat_key, promo_ref=host.code, ai_fallback=True)
    return host


def test_one_open_case_per_chat_and_later_hand_offs_append(rt):
    # given a hand-off in a group without a linked creator
    first, created = handoff_case(question="能开发票吗？")
    assert created and first.state == "open" and first.routed_to == "operators" and first.creator_id is None
    # when two more questions are handed off in the same chat (one by another member)
    other = chat_user("console", "bob", name="鲍勃")
    second, created_2 = handoff_case(question="发票抬头怎么填")
    third, created_3 = handoff_case(question="我要投诉", asker=other, name="鲍勃")
    # then they join the open case: one row, three questions, the first asker kept
    assert (created_2, created_3) == (False, False)
    assert second.id == third.id == first.id
    case = _case(first.id)
    assert case.questions == 3 and case.question.split("\n") == ["能开发票吗？", "发票抬头怎么填", "我要投诉"]
    assert case.asker_name == "小红"
    with db.connection_context():
        assert HandoffCase.select().count() == 1
    # and another chat gets a case of its own
    elsewhere, created_4 = handoff_case(chat="grp-other")
    assert created_4 and elsewhere.id != first.id


def test_the_database_refuses_a_second_open_case_in_a_chat(rt):
    # given an open case
    case, _ = handoff_case()
    # when a second open row for the chat is written around the service
    with db.connection_context(), pytest.raises(Exception) as refused, db.atomic():
        HandoffCase.create(chat_key=case.chat_key, platform="console", chat_id=case.chat_id, chat_kind="group",
                           asker_id=case.asker_id, question="x", routed_to="operators")
    # then the partial unique index refuses it (an integrity error), and a closed one does not count
    assert "unique" in str(refused.value).lower() or "integrity" in type(refused.value).__name__.lower()
    with db.connection_context():
        handoff.close(case.id, by="operator:1")
    again, created = handoff_case(question="还在吗")
    assert created and again.id != case.id


def test_a_linked_group_routes_to_its_creator_who_is_told_in_a_private_chat(rt):
    # given a group linked to a creator reachable in a console private chat
    host = _linked_group()
    # when a member's question is handed off, then another
    case, _ = handoff_case(question="这个能用多久？")
    handoff_case(question="支持退款吗？")
    # then the case is the creator's, and the creator got one notice per question with the command
    assert (case.routed_to, case.creator_id) == ("creator", host.id)
    notices = outbox_rows(f"handoff:{case.id}:notice:")
    assert [n.chat_id for n in notices] == ["host", "host"] and {n.chat_kind for n in notices} == {"private"}
    assert "这个能用多久？" in notices[0].payload["text"] and f"/answer {case.id}" in notices[0].payload["text"]
    assert "支持退款吗？" in notices[1].payload["text"]


def test_the_linked_creator_asking_in_their_own_group_goes_to_the_operators(rt):
    host = _linked_group()
    with db.connection_context():
        host_user_id = host.user_id
    case, _ = handoff_case(asker=chat_user("console", "host"), question="后台怎么设置？")
    assert case.routed_to == "operators" and case.asker_id == host_user_id
    assert outbox_rows(f"handoff:{case.id}:notice:") == []


def test_answer_sends_to_the_asker_chat_once_and_closes_later(rt):
    # given an open case in a group
    case, _ = handoff_case(question="能开发票吗？")
    # when an operator answers it
    with db.connection_context():
        answered = handoff.answer(case.id, "可以，下单后联系客服开票。", by="operator:3")
    # then it is answered, and the answer is one outbox row to the group, naming the asker
    said = "可以，下单后联系客服开票。"
    assert (answered.state, answered.answered_by, answered.answer) == ("answered", "operator:3", said)
    rows = outbox_rows(f"handoff:{case.id}:answer")
    assert len(rows) == 1 and (rows[0].chat_id, rows[0].chat_kind) == ("grp-h", "group")
    assert "@小红" in rows[0].payload["text"] and "可以，下单后联系客服开票。" in rows[0].payload["text"]
    # and it cannot be answered twice
    with db.connection_context(), pytest.raises(Conflict):
        handoff.answer(case.id, "再答一次", by="operator:4")
    assert len(outbox_rows(f"handoff:{case.id}")) == 1
    # an answered case closes once; a closed one refuses both
    with db.connection_context():
        assert handoff.close(case.id, by="operator:3").state == "closed"
        with pytest.raises(Conflict):
            handoff.close(case.id, by="operator:3")
        with pytest.raises(Conflict):
            handoff.answer(case.id, "晚了", by="operator:3")
    # and the chat can hand off again: a new case
    new, created = handoff_case(question="还有问题")
    assert created and new.id != case.id


def test_only_the_routed_creator_may_answer_a_creator_case(rt):
    host = _linked_group()
    stranger = creator(user=chat_user("console", "stranger"), rank=1)
    case, _ = handoff_case()
    operators_case, _ = handoff_case(chat="grp-plain")
    with db.connection_context():
        with pytest.raises(Forbidden):
            handoff.answer(case.id, "我来答", by=f"creator:{stranger.id}", creator_id=stranger.id)
        with pytest.raises(Forbidden):  # a creator may not answer an operators' case either
            handoff.answer(operators_case.id, "我来答", by=f"creator:{host.id}", creator_id=host.id)
        assert handoff.answer(case.id, "可以的", by=f"creator:{host.id}", creator_id=host.id).state == "answered"
        # operators may answer a creator's case too
        assert handoff.answer(operators_case.id, "好的", by="operator:1").state == "answered"


@pytest.mark.parametrize("kwargs, code", [
    ({"question": "   "}, "empty_question"),
    ({"chat_id": "a b"}, "invalid_chat"),
    ({"chat_id": "x" * 65}, "invalid_chat"),
    ({"chat_kind": "channel"}, "invalid_chat"),
    ({"platform": "fax"}, "unknown_platform"),
    ({"asker_id": 0}, "invalid_asker"),
])
def test_bad_input_opens_nothing(rt, kwargs, code):
    values = {"platform": "console", "chat_id": "grp-h", "chat_kind": "group", "asker_id": 1,
              "question": "能开发票吗？"}
    values.update(kwargs)
    with db.connection_context():
        with pytest.raises(InvalidInput) as refused:
            handoff.open_case(**values)
        assert refused.value.code == code
        assert HandoffCase.select().count() == 0


def test_bad_answers_and_unknown_cases_are_refused(rt):
    case, _ = handoff_case()
    with db.connection_context():
        for text, code in (("", "empty_answer"), ("  \n ", "empty_answer"), ("长" * 1001, "answer_too_long")):
            with pytest.raises(InvalidInput) as refused:
                handoff.answer(case.id, text, by="operator:1")
            assert refused.value.code == code
        for missing in (0, -1, 10**6, 2**63, True):
            with pytest.raises(NotFound):
                handoff.answer(missing, "好的", by="operator:1")
        assert _case(case.id).state == "open"
        assert OutboundMessage.select().where(OutboundMessage.key.startswith("handoff:")).count() == 0


def test_long_questions_are_clipped_and_a_case_keeps_a_bounded_text(rt):
    case, _ = handoff_case(question="问" * 5000)
    assert len(_case(case.id).question) == handoff.QUESTION_MAX
    for _i in range(12):
        handoff_case(question="再问" * 300)
    kept = _case(case.id)
    assert kept.questions == 13 and len(kept.question) <= handoff.QUESTIONS_MAX


def test_list_and_counts(rt):
    a, _ = handoff_case(chat="g1")
    b, _ = handoff_case(chat="g2")
    c, _ = handoff_case(chat="g3")
    with db.connection_context():
        handoff.answer(b.id, "好", by="operator:1")
        handoff.close(c.id, by="operator:1")
        assert [x.id for x in handoff.list_cases("open")] == [a.id]
        assert [x.id for x in handoff.list_cases()] == [c.id, b.id, a.id]
        assert [x.id for x in handoff.list_cases(before=c.id, limit=1)] == [b.id]
        assert handoff.counts() == {"open": 1, "answered": 1, "closed": 1}
        with pytest.raises(InvalidInput):
            handoff.list_cases("pending")


def test_a_linked_creator_nobody_can_reach_in_chat_leaves_the_case_to_the_operators(rt):
    # given a group linked to a creator without any chat account
    host = creator(rank=1)
    with db.connection_context():
        GroupConfig.create(chat_key="console:grp-h", promo_ref=host.code)
    # when a question is handed off / then the operators get it, and no notice is written
    case, _ = handoff_case()
    assert (case.routed_to, case.creator_id) == ("operators", None)
    assert outbox_rows(f"handoff:{case.id}:") == []


def test_the_creator_is_told_where_they_can_be_reached(rt):
    # given a Telegram group linked to a creator with a Telegram account, and a console group
    # linked to a creator reachable only in their open WeChat window
    tg_host = creator(user=linked(buyer("tg-host"), telegram="5550001"), rank=1)
    wx_host = creator(user=linked(buyer("wx-host"), wechat="oWX-host"), rank=1)
    with db.connection_context():
        GroupConfig.create(chat_key="telegram:-100777", promo_ref=tg_host.code)
        GroupConfig.create(chat_key="console:grp-wx", promo_ref=wx_host.code)
    member = chat_user("telegram", "8880001", name="tg-member")
    # when a question is handed off in each
    tg_case, _ = handoff_case(chat="-100777", platform="telegram", asker=member)
    wx_case, _ = handoff_case(chat="grp-wx")
    # then each creator's notice goes to the chat they can be reached in
    [tg_notice] = outbox_rows(f"handoff:{tg_case.id}:notice:")
    [wx_notice] = outbox_rows(f"handoff:{wx_case.id}:notice:")
    assert (tg_notice.platform, tg_notice.chat_id) == ("telegram", "5550001")
    assert (wx_notice.platform, wx_notice.chat_id) == ("wechat", "oWX-host")
