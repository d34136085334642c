"""Community groups through the real core: rules kept as data (priority, exact/contains/regex),
banned words, welcome messages, the per-group reply limit, the offline AI fallback and private
commands; regex rules on RE2 (linear time) and `save_rule` refusing what RE2 cannot run; the
operators' CLI."""

from __future__ import annotations

import time

import pytest

from bots import groups
from bots.types import Member
from models.chat import GroupConfig, GroupRule
from models.db import db
from models.errors import InvalidInput, NotFound
from models.withdrawals import Withdrawal
from tests.bots.conftest import join, say, text_of
from tests.factories import earn

G = "grp-1"  # console group id; its chat key is console:grp-1
KEY = f"console:{G}"


def rule(*args, **kw) -> GroupRule:  # noqa: ANN002, ANN003
    with db.connection_context():
        return groups.save_rule(*args, **kw)


def configure(chat_key: str = KEY, **kw) -> GroupConfig:  # noqa: ANN003
    with db.connection_context():
        return groups.configure(chat_key, **kw)


def test_highest_priority_matching_rule_answers(rt):
    # given a general rule for every group and a more specific, higher-priority one for this group
    rule("*", "contains", "发货", "付款后自动发货。", priority=1)
    rule(KEY, "contains", "什么时候发货", "一般一分钟内发货。", priority=5)
    rule("console:other", "contains", "发货", "别的群的答案", priority=99)
    # then the specific rule wins here, the general one answers other wording
    assert text_of(say("请问什么时候发货？", chat=G)) == "一般一分钟内发货。"
    assert text_of(say("发货了吗", chat=G)) == "付款后自动发货。"


def test_ties_go_to_the_older_rule_and_inactive_rules_are_skipped(rt):
    first = rule("*", "contains", "价格", "旧答案")
    rule("*", "contains", "价格", "新答案")
    assert text_of(say("价格多少", chat=G)) == "旧答案"
    with db.connection_context():
        groups.set_rule_active(first.id, False)
    assert text_of(say("价格多少", chat=G)) == "新答案"


def test_exact_contains_and_regex(rt):
    rule("*", "exact", "Hi", "你好！")
    rule("*", "regex", r"^订单\s*QX\d{8}", "订单问题请私聊机器人发送「补发 订单号」。")
    rule("*", "contains", "优惠", "群公告里有优惠券。")
    assert text_of(say("hi", chat=G)) == "你好！"  # case-insensitive, whole message
    assert say("hi there", chat=G) == []  # exact means the whole message
    assert "补发" in text_of(say("订单 QX20250101 没收到", chat=G))
    assert text_of(say("有优惠吗", chat=G)) == "群公告里有优惠券。"
    assert say("随便聊聊", chat=G) == []  # nothing matches, no fallback: silence


def test_rule_reply_can_name_the_asker(rt):
    rule("*", "exact", "签到", "{name} 签到成功！")
    assert text_of(say("签到", who="u1", name="小明", chat=G)) == "小明 签到成功！"


@pytest.mark.parametrize("pattern, why", [
    ("(", "无法解析"),
    (r"(\w+)\1", "反向引用"),
    ("(?=a)a", "环视"),
    ("(?<!a)b", "环视"),
    ("a{1001}", "无法解析"),
    (r"[\p{Han}a-z]{1000}", "太复杂"),
    ("x" * 201, "1-200"),
])
def test_save_rule_refuses_regexes_re2_cannot_run(rt, pattern, why):
    with pytest.raises(InvalidInput) as caught:
        rule("*", "regex", pattern, "reply")
    assert why in caught.value.message
    with db.connection_context():
        assert GroupRule.select().count() == 0


@pytest.mark.parametrize("args, code", [
    (("nowhere", "contains", "a", "b"), "invalid_scope"),
    (("telegram:", "contains", "a", "b"), "invalid_scope"),
    (("*", "fuzzy", "a", "b"), "invalid_match"),
    (("*", "contains", "", "b"), "invalid_pattern"),
    (("*", "contains", "a", ""), "invalid_reply"),
    (("*", "contains", "a", "b", 10**9), "invalid_priority"),
])
def test_save_rule_refuses_bad_rules(rt, args, code):
    with pytest.raises(InvalidInput) as caught:
        rule(*args)
    assert caught.value.code == code


@pytest.mark.parametrize("pattern, matches", [
    ("(a+)+$", False), ("(a*)*b", False), ("(.*a){20}", True), ("(a|aa)+$", False), (".*.*.*x", False),
])
def test_regexes_that_backtrack_on_python_re_are_linear_on_re2(rt, pattern, matches):
    # given a pattern that makes a backtracking engine take exponential time (once refused)
    rule("*", "regex", pattern, "matched")
    # when a message built to make it backtrack arrives, then it is answered (or not) at once
    started = time.monotonic()
    assert text_of(say("a" * 400 + "!", chat=G)) == ("matched" if matches else "")
    assert time.monotonic() - started < 2
    # and the engine itself stays linear far beyond the REGEX_TEXT_MAX characters a rule sees
    started = time.monotonic()
    assert (groups._compiled(pattern).search("a" * 100_000 + "!") is not None) == matches  # noqa: SLF001
    assert time.monotonic() - started < 1


def test_regex_rules_match_case_insensitively_and_see_only_the_start_of_a_message(rt):
    rule("*", "regex", r"^hello\s+(世界|world)$", "hi!")
    rule("*", "regex", "needle", "found")
    assert text_of(say("HELLO 世界", chat=G)) == "hi!"
    assert text_of(say("Hello   World", chat=G)) == "hi!"
    assert say("x" * groups.REGEX_TEXT_MAX + "needle", chat=G) == []


def test_a_bad_regex_written_around_save_rule_is_never_run(rt):
    # given rows written directly (an old import, a manual fix) with a broken and a slow regex
    with db.connection_context():
        GroupRule.create(scope="*", match="regex", pattern="([", reply="broken", priority=9)
        GroupRule.create(scope="*", match="regex", pattern="(a+)+$", reply="slow", priority=8)
        GroupRule.create(scope="*", match="contains", pattern="aaa", reply="safe", priority=1)
    # when a message that would make the slow one backtrack for ages arrives
    started = time.monotonic()
    replies = say("a" * 40 + "!", chat=G)
    # then the broken rule is skipped, the once-slow one runs in linear time (no match), and the
    # safe one answers at once
    assert text_of(replies) == "safe"
    assert time.monotonic() - started < 2


def test_banned_words_get_a_warning_and_nothing_else(rt):
    configure(banned_words=["加微信", "Spam"])
    rule("*", "contains", "微信", "不会被触发")
    replies = say("快 加 微 信 领红包", who="u2", name="老王", chat=G)
    assert len(replies) == 1 and "老王" in replies[0].text and "禁止" in replies[0].text
    assert "加微信" not in replies[0].text
    assert "禁止" in text_of(say("SPAM here", chat=G))
    # even a command carrying a banned word is not run
    assert "禁止" in text_of(say("/script spam", chat=G))


def test_welcome_with_coupon_and_promo_link(rt, settings):
    creator = join("host")
    configure(welcome_text="欢迎 {name}！", coupon_text="新人券：满50减5", promo_ref=creator.code)
    replies = say(chat=G, who="newbie", joined=(Member("newbie", "小红"), Member("n2", "小蓝")))
    text = text_of(replies)
    assert "欢迎 小红、小蓝！" in text and "新人券：满50减5" in text
    assert f"pages/index/index?ref={creator.code}" in text
    link = f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start=_s{creator.code}"
    assert replies[0].link == link and replies[0].buttons[0][0].url == link
    # the link opens the creator's shop, it does not enrol the visitor
    shop = text_of(say("/start", who="visitor", platform="telegram", payload=f"_s{creator.code}"))
    assert creator.code in shop and "pages/index/index" in shop


def test_default_welcome_without_config(rt):
    text = text_of(say(chat=G, who="x", joined=(Member("x", "Xiao"),)))
    assert "欢迎 Xiao 加入本群" in text


def test_join_event_without_a_sender_welcomes_the_newcomer(rt):
    text = text_of(say(chat=G, who="", joined=(Member("fresh", "Fresh"),)))
    assert "欢迎 Fresh" in text
    assert say(chat=G, who="") == []  # a service message nobody sent: silence


def test_replies_stop_at_the_group_limit(rt):
    # given a group allowed 3 replies per minute
    configure(replies_per_minute=3)
    rule("*", "contains", "在吗", "在的")
    answered = [say("在吗", who=f"m{i}", chat=G) for i in range(6)]
    # then three are answered and the bot stays silent after that, in this group only
    assert [len(a) for a in answered] == [1, 1, 1, 0, 0, 0]
    assert text_of(say("在吗", chat="grp-2")) == "在的"


def test_the_default_limit_is_the_telegram_group_setting(rt, settings):
    rule("*", "exact", "ping", "pong")
    limit = int(settings.TELEGRAM_RATE_PER_GROUP_PER_MIN)
    answered = sum(len(say("ping", who=f"p{i}", chat=G)) for i in range(limit + 3))
    assert answered == limit


def test_ai_fallback_answers_only_when_switched_on(rt, shop):
    shop.card_sku(keys=1, price=2990, code="VIP-MONTH")
    question = "VIP-MONTH 多少钱？"
    assert say(question, chat=G) == []
    configure(ai_fallback=True)
    assert "¥29.90" in text_of(say(question, chat=G))
    # small talk still gets silence rather than babble
    assert say("哈哈哈哈", chat=G) == []
    # and a rule still beats the fallback
    rule("*", "contains", "多少钱", "看群公告")
    assert text_of(say(question, chat=G)) == "看群公告"


@pytest.mark.parametrize("command", ["/withdraw 100", "提现 100", "/earnings", "收益", "/statement", "明细",
                                     "/resend QX1234", "CMD_WITHDRAW"])
def test_private_commands_in_a_group_ask_for_a_private_chat(rt, command):
    creator = join("ann", rank=1)
    earn(creator, 50_000)
    kw = {"callback": command} if command.startswith("CMD_") else {"text": command}
    replies = say(chat=G, **kw)
    assert text_of(replies).startswith("请私聊机器人")
    assert "¥" not in text_of(replies)
    with db.connection_context():
        assert Withdrawal.select().count() == 0


def test_public_commands_work_in_a_group(rt):
    join("ann", rank=1)
    assert "当前等级：一星" in text_of(say("/level", chat=G))
    assert "【广告】" in text_of(say("/script 群推广", chat=G))


def test_an_inactive_group_is_ignored(rt):
    configure(active=False)
    rule("*", "contains", "hi", "hello")
    assert say("hi", chat=G) == []
    assert say("/help", chat=G) == []
    assert say(chat=G, joined=(Member("q", "Q"),)) == []


def test_configure_validates(rt):
    with pytest.raises(InvalidInput):
        configure("*", title="all")
    with pytest.raises(InvalidInput):
        configure(replies_per_minute=0)
    with pytest.raises(InvalidInput):
        configure(banned_words=["x" * 51])
    with pytest.raises(NotFound):
        configure(promo_ref="NOSUCH99")
    cfg = configure(banned_words=["a", "a", " ", "b"])
    assert cfg.banned_words == ["a", "b"]
    with pytest.raises(InvalidInput):
        configure(colour="blue")


# ---- operators' CLI ----------------------------------------------------------------------------

def test_cli_adds_lists_and_refuses_rules(cli):
    added = cli("groups", "rules", "add", "--scope", KEY, "--match", "regex", "--pattern", r"^价格\d+",
                "--reply", "看公告", "--priority", "3")
    assert added.exit_code == 0, added.output
    assert "rule 1" in added.output
    bad = cli("groups", "rules", "add", "--match", "regex", "--pattern", r"(\w+)\1", "--reply", "x")
    assert bad.exit_code != 0 and "反向引用" in bad.output
    listed = cli("groups", "rules", "list")
    assert listed.exit_code == 0 and KEY in listed.output and "priority 3" in listed.output
    off = cli("groups", "rules", "disable", "1")
    assert off.exit_code == 0 and "off" in off.output
    assert cli("groups", "rules", "disable", "99").exit_code != 0


def test_cli_configures_a_group(cli):
    creator = join("host")
    result = cli("groups", "config", KEY, "--welcome", "欢迎 {name}", "--coupon", "满50减5",
                 "--promo-ref", creator.code, "--banned-words", "广告,加微信，刷单", "--rate", "5",
                 "--ai-fallback")
    assert result.exit_code == 0, result.output
    assert "rate 5/min" in result.output and "ai_fallback on" in result.output and "banned words 3" in result.output
    with db.connection_context():
        cfg = GroupConfig.get(GroupConfig.chat_key == KEY)
    assert (cfg.replies_per_minute, cfg.ai_fallback, cfg.promo_ref) == (5, True, creator.code)
    assert cfg.banned_words == ["广告", "加微信", "刷单"]
    again = cli("groups", "config", KEY, "--rate", "0", "--no-ai-fallback")
    assert "rate default/min" in again.output and "ai_fallback off" in again.output
    bad = cli("groups", "config", KEY, "--promo-ref", "NOSUCH99")
    assert bad.exit_code != 0
