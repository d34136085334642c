"""The groups' AI fallback through the real core (`bots.core.handle`): grounded answers from the
catalog, a hand-off to the group's linked creator, the creator's /answer reaching the asker
through the sender, the silence after a human answered (and after the creator speaks in the
group), moderation of members' text, and a model (the fake OpenAI server) that answers, stalls
or fails, the group getting an answer either way within the timeout."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest

from bots import groups
from bots.commands.handoff_flow import quiet_key
from bots.core import handle
from bots.types import Incoming, Member
from content_ai import moderation
from models import moderation as word_lists
from models.db import db
from models.errors import DomainError
from models.handoff import HandoffCase
from tests.bots.conftest import join, say, text_of
from tests.factories import online_ai, outbox_rows

G = "grp-ai"
KEY = f"console:{G}"
PRICE_QUESTION = "VIP-MONTH 多少钱？"



@pytest.fixture
def catalog(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=3, price=2990, code="VIP-MONTH")


def configure(**kw) -> None:  # noqa: ANN003
    with db.connection_context():
        groups.configure(KEY, **kw)


def linked_group():  # noqa: ANN201
    """Host joins privately (a console chat "host") and is linked to the group."""
    host = join("host")
    configure(ai_fallback=True, promo_ref=host.code)
    return host


def sent(rt, chat: str) -> list[str]:  # noqa: ANN001
    """What the one sender delivered to a console chat (after a drain)."""
    rt.sender.drain("console", deadline_s=5)
    return [m.payload.get("text", "") for m in rt.sender.console.sent if m.chat_id == chat]


def open_case() -> HandoffCase:
    with db.connection_context():
        return HandoffCase.get(HandoffCase.chat_key == KEY, HandoffCase.state == "open")


def test_a_product_question_is_answered_from_the_catalog(rt, catalog):
    # given a group with the AI fallback on
    configure(ai_fallback=True)
    # when a member asks a price / then the answer names the product and its current price
    answer = text_of(say(PRICE_QUESTION, who="amy", chat=G))
    assert "VIP-MONTH" in answer or "会员卡" in answer
    assert "29.90" in answer
    # and small talk still gets silence
    assert say("哈哈哈哈", who="amy", chat=G) == []


def test_hand_off_to_the_creator_who_answers_and_the_bot_stays_silent_then_answers_again(rt, catalog):
    # given a group linked to the creator "host"
    host = linked_group()
    # when a member asks for a human
    first = text_of(say("我要转人工，能开发票吗？", who="amy", name="艾米", chat=G))
    # then the member is told once that a human will answer, and the case is the creator's
    assert "已转给人工" in first and "艾米" in first
    case = open_case()
    assert (case.routed_to, case.creator_id) == ("creator", host.id)
    # and asking again while the case is open appends the question without repeating the notice
    assert say("人工客服在吗？", who="amy", name="艾米", chat=G) == []
    assert open_case().questions == 2
    # and the creator is told in their private chat, through the sender, how to answer
    notices = sent(rt, "host")
    assert any(f"/answer {case.id}" in n and "能开发票吗" in n for n in notices)
    # when the creator answers with the command in their private chat
    done = text_of(say(f"/answer {case.id} 可以开发票，下单后联系客服。", who="host"))
    assert f"#{case.id}" in done
    # then the group receives the answer through the sender, naming the asker
    delivered = sent(rt, G)
    assert any("可以开发票,下单后联系客服" in t and "艾米" in t for t in delivered)  # as typed, NFKC
    with db.connection_context():
        assert HandoffCase.get_by_id(case.id).state == "answered"
    # and the bot's AI stays silent in the group, while commands still work
    assert say(PRICE_QUESTION, who="amy", chat=G) == []
    assert "/help" in text_of(say("/help", who="amy", chat=G))
    assert 0 < rt.redis.ttl(quiet_key(KEY)) <= rt.settings.HANDOFF_SILENCE_S
    # when the silence runs out (the key expires) / then the bot answers again
    rt.redis.pexpire(quiet_key(KEY), 1)
    time.sleep(0.05)
    assert "29.90" in text_of(say(PRICE_QUESTION, who="amy", chat=G))


def drains_queued(rt) -> int:  # noqa: ANN001
    return sum(1 for job in rt.queue.get_jobs() if job.func_name == "tasks.chat.drain_outbound")


def test_the_creators_notice_and_answer_are_sent_at_once_not_by_the_periodic_drain(rt, catalog):
    # given a group linked to the creator "host", and no drain queued
    linked_group()
    rt.queue.empty()
    rt.redis.delete(*rt.redis.keys("*outbound*") or ["-"])
    # when a member asks for a human
    say("转人工", who="amy", name="艾米", chat=G)
    # then a drain of the outbox is queued right away for the creator's notice
    assert drains_queued(rt) >= 1
    # when the creator answers in chat (the drain's lease dropped as a started drain drops it)
    rt.queue.empty()
    rt.redis.delete(*rt.redis.keys("*outbound*") or ["-"])
    say(f"/answer {open_case().id} 马上为你处理", who="host")
    # then the answer's drain is queued right away too
    assert drains_queued(rt) >= 1


def test_the_creator_speaking_in_the_group_silences_the_ai(rt, catalog):
    # given a linked group that answers
    linked_group()
    assert "29.90" in text_of(say(PRICE_QUESTION, who="amy", chat=G))
    # when the creator writes in the group (a human answering)
    assert say("大家好，有问题直接问我就行", who="host", chat=G) == []
    # then the AI answers stay silent there; a rule (not AI) still answers
    assert say(PRICE_QUESTION, who="amy", chat=G) == []
    with db.connection_context():
        groups.save_rule(KEY, "exact", "群规", "请文明交流。")
    assert text_of(say("群规", who="amy", chat=G)) == "请文明交流。"


def test_silence_off_when_the_setting_is_zero(rt, catalog):
    # given HANDOFF_SILENCE_S = 0
    linked_group()
    deps = SimpleNamespace(settings=rt.settings.model_copy(update={"HANDOFF_SILENCE_S": 0}), redis=rt.redis,
                           withdraw=rt.withdraw, ai=None)
    # when the creator speaks in the group / then the AI still answers
    handle(Incoming("console", G, "group", Member("host", "host"), text="我来说两句"), deps)
    answer = handle(Incoming("console", G, "group", Member("amy", "amy"), text=PRICE_QUESTION), deps)
    assert "29.90" in text_of(answer)


def test_answer_refusals(rt, catalog):
    # given a creator's open case
    host = linked_group()
    say("我要投诉，找人工", who="amy", chat=G)
    case = open_case()
    join("rival")
    # then: another creator, a non-creator, bad arguments, an unknown case are each refused politely
    assert "不是转给你的" in text_of(say(f"/answer {case.id} 我来答", who="rival"))
    assert "/join" in text_of(say(f"/answer {case.id} 我来答", who="nobody"))
    for bad in ("/answer", f"/answer {case.id}", "/answer abc 好的", "/answer -3 好的", f"/answer {case.id}x 好"):
        assert "/answer 编号" in text_of(say(bad, who="host")), bad
    assert "最多" in text_of(say(f"/answer {case.id} " + "长" * 1001, who="host"))
    assert "没有找到" in text_of(say("/answer 999999 好的", who="host"))
    with db.connection_context():
        assert HandoffCase.get_by_id(case.id).state == "open"
    # the keyword form works for the routed creator, once
    assert f"#{case.id}" in text_of(say(f"回复 {case.id} 已处理，请查收。", who="host"))
    assert "已经回复或关闭" in text_of(say(f"/answer {case.id} 再说一次", who="host"))
    assert len(outbox_rows(f"handoff:{case.id}:answer")) == 1
    assert host.id == case.creator_id


def test_a_blocked_answer_is_refused_and_nothing_is_sent(rt, catalog):
    linked_group()
    say("转人工", who="amy", chat=G)
    case = open_case()
    ensure_blocked_word("网赌")
    assert "不适宜" in text_of(say(f"/answer {case.id} 来玩网赌吧", who="host"))
    assert outbox_rows(f"handoff:{case.id}:answer") == []
    assert open_case().id == case.id


def ensure_blocked_word(word: str) -> None:
    """The moderation lists hold `word` as a blocking word (seeded by default; added if not)."""
    with db.connection_context():
        try:
            word_lists.add_word("sensitive", word, actor="test", action="block")
        except DomainError:
            pass  # there already
    moderation.forget_cached()


def test_a_members_blocked_message_gets_a_warning_and_nothing_else(rt, catalog):
    # given a group with the AI fallback and a rule that would match
    configure(ai_fallback=True, banned_words=["广告"])
    with db.connection_context():
        groups.save_rule(KEY, "contains", "多少钱", "看群公告")
    ensure_blocked_word("网赌")
    # when a member's message is blocked by moderation / then one polite warning, nothing else
    replies = say("VIP-MONTH 多少钱？一起网赌吗", who="amy", name="艾米", chat=G)
    assert len(replies) == 1 and "不适宜" in replies[0].text and "艾米" in replies[0].text
    # and the group's own banned words still work
    assert "禁止的内容" in text_of(say("发广告啦", who="amy", chat=G))
    assert text_of(say(PRICE_QUESTION, who="amy", chat=G)) == "看群公告"


# ---- with a model behind the fake OpenAI server ---------------------------------------------------


@pytest.fixture
def model(rt, fake_openai):  # noqa: ANN001, ANN201
    """deps for `handle` whose provider talks to the fake server (1 s timeout, no retries)."""
    fake_openai.reset()
    ai = online_ai(rt, fake_openai, AI_BREAKER_FAILURES=100)
    yield SimpleNamespace(settings=ai.settings, redis=rt.redis, withdraw=rt.withdraw, ai=ai)
    fake_openai.reset()


def ask(deps, text: str, who: str = "amy") -> str:  # noqa: ANN001
    return text_of(handle(Incoming("console", G, "group", Member(who, who), text=text), deps))


def test_offline_and_model_answers_both_reach_the_group(rt, catalog, model, fake_openai):
    configure(ai_fallback=True)
    # given the offline answer (no model)
    offline = text_of(say(PRICE_QUESTION, who="amy", chat=G))
    assert "29.90" in offline and fake_openai.chat_calls == []
    # when a model answers from the facts, citing the SKU
    price = re.search(r"[¥￥]?\d+\.\d{2}", offline).group(0)
    fake_openai.answer({"answer": f"VIP-MONTH 月卡现在 {price}，付款后自动发货。", "cited": ["sku:VIP-MONTH"],
                        "confident": True})
    answered = ask(model, PRICE_QUESTION)
    # then the model's words reach the group (the model was asked, with the question alone as the user's turn)
    assert "月卡现在" in answered and "29.90" in answered
    assert len(fake_openai.chat_calls) == 1
    # and a model that invents a number is caught: the offline answer goes out instead
    fake_openai.invent_number(9.9)
    guarded = ask(model, PRICE_QUESTION, who="bob")
    assert "9.9元" not in guarded and "29.90" in guarded


@pytest.mark.parametrize("trouble", ["stall", "fail"])
def test_a_model_that_stalls_or_fails_still_gives_the_offline_answer_in_time(rt, catalog, model, fake_openai,
                                                                                trouble):
    configure(ai_fallback=True)
    assert "29.90" in text_of(say(PRICE_QUESTION, who="warm", chat=G))  # the offline path, warm (index, e5)
    if trouble == "stall":
        fake_openai.stall(5)  # longer than the 1 s timeout
    else:
        fake_openai.fail(500)
    started = time.monotonic()
    answered = ask(model, PRICE_QUESTION)
    # then the offline answer, bounded by the timeout (generous: one try of 1 s plus the rest)
    assert "29.90" in answered
    assert time.monotonic() - started < 4
    assert len(fake_openai.chat_calls) >= 1
