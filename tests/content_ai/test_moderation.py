"""Moderation through its one entry point, `content_ai.moderation.moderate`, on the real word
lists in the database and, for text published to WeChat, the real wechatpy client against the
fake WeChat API's msg_sec_check: pass, rewrite of absolute claims, block of sensitive terms,
evasion by spaces / punctuation / zero-width characters, lists edited -> the automaton rebuilt,
WeChat risky / error / stall, bad text, and the decision log."""

from __future__ import annotations

import logging

import pytest

from content_ai.moderation import moderate
from models import moderation
from models.db import db
from qianxing.gateways.wechat import MiniProgramClient
from tests.factories import moderation_decisions, moderation_word
from tests.fakes.wechat_api import FakeWeChatAPI


@pytest.fixture
def lists(rt):  # noqa: ANN001, ANN201
    """The starter lists, freshly seeded; a clean decision log."""
    return rt


@pytest.fixture
def wechat(lists, fake_wechat: FakeWeChatAPI):  # noqa: ANN001, ANN201
    """The settings with msg_sec_check on, and the runtime's mini-program client."""
    fake_wechat.sec_check("pass")
    yield lists.settings.model_copy(update={"MODERATION_WECHAT_CHECK": True}), lists.wechat
    fake_wechat.sec_check("pass")


def test_plain_text_passes_unchanged_and_is_logged(lists):
    # given an answer with nothing to object to (a time word "最近" and "最后" included)
    text = "这款会员卡最近很受欢迎，最后一批库存，下单后 5 分钟内自动发货。"
    # when it is moderated
    got = moderate(text, kind="answer", subject="sku:VIP-M", settings=lists.settings)
    # then it passes unchanged, and the decision is in the log
    assert (got.outcome, got.text, got.hits) == ("pass", text, ())
    [row] = moderation_decisions()
    assert (row.id, row.kind, row.subject, row.outcome, row.source) == (got.decision_id, "answer", "sku:VIP-M",
                                                                          "pass", "local")
    assert row.excerpt == text and row.hits == [] and not row.reviewed


@pytest.mark.parametrize(("text", "want"), [
    ("这是全网最低价的好货，快来抢！", "这是好货，快来抢！"),
    ("最好的面膜就是它！适合干皮。", "面膜就是它！适合干皮。"),
    ("【广告】极品好茶，口感醇厚。", "【广告】好茶，口感醇厚。"),
    ("国家级品质，100%有效。今天下单送赠品。", "今天下单送赠品。"),  # nothing sensible left: the sentence goes
    ("我们是行业第一。第一次下单立减5元。", "第一次下单立减5元。"),  # 第一次 is an ordinal, not a claim
])
def test_absolute_claims_are_dropped(lists, text: str, want: str):
    got = moderate(text, kind="script", subject="creator:1", settings=lists.settings)
    assert (got.outcome, got.text) == ("rewrite", want)
    assert got.hits and got.decision_id is not None


def test_a_rewrite_that_leaves_nothing_is_a_block(lists):
    got = moderate("销量第一！", kind="hook", settings=lists.settings)
    assert (got.outcome, got.text, got.blocked) == ("block", "", True)
    assert "销量第一" in got.hits


@pytest.mark.parametrize("text", [
    "想赚快钱？来网赌吧。",
    "欢迎来到赌\u200b博平台",  # a zero-width space inside
    "专业 刷 单，日结",  # spaces
    "信用卡-套-现，秒到",  # punctuation
    "办ＪＩＡ证请找我：假.证",  # full-width letters, a dot
    "Best c.a.s.i.n.o in town",  # an ASCII word split by dots
])
def test_sensitive_terms_block_even_when_split(lists, text: str):
    got = moderate(text, kind="group_user", subject="chat:telegram:-100", settings=lists.settings)
    assert (got.outcome, got.text) == ("block", "")
    [row] = moderation_decisions(outcome="block")
    assert row.hits == list(got.hits) and row.kind == "group_user"


def test_an_ascii_word_inside_another_word_is_not_a_hit(lists):
    got = moderate("Visit the occasinos boutique and casinoland", kind="answer", settings=lists.settings)
    assert got.outcome == "pass"
    assert moderate("a casino here", kind="answer", settings=lists.settings).outcome == "block"


def test_editing_the_lists_rebuilds_the_automaton(lists):
    # given a word that nothing catches yet
    text = "这款是爆款神器，人手一个。"
    assert moderate(text, kind="answer", settings=lists.settings).outcome == "pass"
    # when an operator adds it to the sensitive list
    word = moderation_word("爆款神器")
    # then the next call blocks it (this process: at once)
    assert moderate(text, kind="answer", settings=lists.settings).outcome == "block"
    # and disabling it lets the text pass again
    with db.connection_context():
        moderation.edit_word(word.id, actor="operator:test", enabled=False)
    assert moderate(text, kind="answer", settings=lists.settings).outcome == "pass"


def test_an_edit_in_another_process_is_seen_after_the_reload_interval(lists):
    # given the automaton built; then a word enabled by another process (a direct UPDATE: this
    # process's edit counter does not move)
    settings = lists.settings.model_copy(update={"MODERATION_RELOAD_S": 0})
    word = moderation_word("神仙水")
    with db.connection_context():
        moderation.edit_word(word.id, actor="operator:test", enabled=False)
    assert moderate("神仙水来了", kind="answer", settings=settings).outcome == "pass"
    with db.connection_context():
        (moderation.ModerationWord.update(enabled=True, updated_at=moderation.utcnow())
         .where(moderation.ModerationWord.id == word.id).execute())
    # then the next check of the lists' version rebuilds it
    assert moderate("神仙水来了", kind="answer", settings=settings).outcome == "block"


def test_wechat_risky_blocks_published_text(wechat, fake_wechat: FakeWeChatAPI):
    settings, client = wechat
    fake_wechat.sec_check("risky", risky_words=("违规",))
    # when a script published to WeChat is moderated: the local lists pass it, WeChat does not
    got = moderate("这是一段违规的内容", kind="script", subject="creator:7", settings=settings, wechat=client,
                   publish=True)
    assert (got.outcome, got.text) == ("block", "")
    assert "msg_sec_check" in got.hits and fake_wechat.sec_checks == ["这是一段违规的内容"]
    [row] = moderation_decisions(outcome="block")
    assert row.source == "wechat"
    # and a clean text passes both
    assert moderate("今天直播间有福利", kind="script", settings=settings, wechat=client, publish=True).outcome == "pass"


def test_wechat_sees_the_rewritten_text_and_not_unpublished_text(wechat, fake_wechat: FakeWeChatAPI):
    settings, client = wechat
    got = moderate("最好的茶叶，口感醇厚。", kind="script", settings=settings, wechat=client, publish=True)
    assert got.outcome == "rewrite" and fake_wechat.sec_checks == [got.text]
    moderate("口感醇厚", kind="answer", settings=settings, wechat=client, publish=False)
    off = settings.model_copy(update={"MODERATION_WECHAT_CHECK": False})
    moderate("口感醇厚", kind="script", settings=off, wechat=client, publish=True)
    assert fake_wechat.sec_checks == [got.text]  # neither of those asked WeChat


@pytest.mark.parametrize("failure", ["error", "http500"])
def test_wechat_errors_leave_the_local_result(wechat, fake_wechat: FakeWeChatAPI, caplog, failure: str):
    settings, client = wechat
    fake_wechat.sec_check(failure)
    with caplog.at_level(logging.WARNING, logger="content_ai.moderation"):
        passed = moderate("口感醇厚，回甘明显", kind="script", settings=settings, wechat=client, publish=True)
        rewritten = moderate("顶级好茶，口感醇厚。", kind="script", settings=settings, wechat=client, publish=True)
    assert (passed.outcome, passed.text) == ("pass", "口感醇厚，回甘明显")
    assert (rewritten.outcome, rewritten.text) == ("rewrite", "好茶，口感醇厚。")
    assert "msg_sec_check failed" in caplog.text and "口感" not in caplog.text  # never the text


def test_a_stalled_wechat_is_bounded_by_the_client_timeout(wechat, fake_wechat: FakeWeChatAPI, settings):
    settings_on, _client = wechat
    fake_wechat.sec_check("stall", stall_s=2)
    client = MiniProgramClient(settings.WECHAT_APPID, settings.WECHAT_SECRET, fake_wechat.base_url, timeout=0.5)
    got = moderate("口感醇厚", kind="script", settings=settings_on, wechat=client, publish=True)
    assert (got.outcome, got.text) == ("pass", "口感醇厚")


@pytest.mark.parametrize("text", [
    "",
    "👍👍🔥 好用！😀",
    "控制字符\x00\x07\x1b[31m 文本\u202e反转",
    "好" * 50_000,
    None,
])
def test_odd_text_never_raises(lists, text):  # noqa: ANN001
    got = moderate(text, kind="answer", settings=lists.settings)
    assert got.outcome == "pass"
    assert got.text == (text or "")
    row = moderation_decisions()[0]
    assert len(row.excerpt) <= 200 and "\x00" not in row.excerpt


def test_huge_text_is_blocked_unread_and_sensitive_words_in_long_text_are_found(lists):
    huge = "好" * (lists.settings.MODERATION_MAX_CHARS + 1)
    assert moderate(huge, kind="answer", settings=lists.settings).hits == ("text_too_long",)
    long = "正常内容。" * 10_000 + "顺便说一句：网赌" + "。" * 10
    assert moderate(long, kind="answer", settings=lists.settings).outcome == "block"


def test_record_false_logs_only_what_did_not_pass(lists):
    assert moderate("口感醇厚", kind="answer", settings=lists.settings, record=False).decision_id is None
    blocked = moderate("网赌平台", kind="group_user", settings=lists.settings, record=False)
    assert blocked.decision_id is not None
    assert [r.id for r in moderation_decisions()] == [blocked.decision_id]


def test_without_readable_lists_the_built_in_lists_still_decide(lists):
    # given the word list table cannot be read when this process first builds its automaton
    from content_ai import moderation as moderator

    moderator.forget_cached()
    with db.connection_context():
        db.execute_sql("ALTER TABLE moderation_word RENAME TO moderation_word_away")
    try:
        # then the built-in defaults still block and rewrite
        assert moderate("网赌平台", kind="answer", settings=lists.settings).outcome == "block"
        assert moderate("顶级好茶。口感醇厚。", kind="answer", settings=lists.settings).outcome == "rewrite"
    finally:
        with db.connection_context():
            db.execute_sql("ALTER TABLE moderation_word_away RENAME TO moderation_word")
        moderator.forget_cached()


def test_a_rewrite_keeps_the_lines_of_a_text_of_fields(lists):
    # given a script as lines of fields, the first and last of them nothing but claims
    text = "销量第一！\n国家级品质，口感醇厚回甘。\n\n最好的茶，就在直播间。\n全网最低价"
    got = moderate(text, kind="script", settings=lists.settings)
    # then each line is rewritten on its own, and the line count is kept (dropped lines are empty)
    assert got.outcome == "rewrite"
    assert got.text.split("\n") == ["", "品质，口感醇厚回甘。", "", "茶，就在直播间。", ""]
