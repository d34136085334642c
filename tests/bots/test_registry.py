"""The command registry: each command declared once, and everything else generated from it:
the parser's tables, the chat menus, the help text, the WeChat official account's menu and the
Telegram command menu (setMyCommands, checked against the fake Bot API)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bots import commands, wechat_oa
from bots.commands import Command, MenuPlace, command, menu_key, use_locale
from bots.telegram import TelegramSession
from bots.types import Button, Reply
from qianxing.cli.tgbot import publish_commands
from qianxing.settings import Settings
from tests.fakes.telegram_api import FakeTelegramAPI

# The texts and tables as they were written by hand before the registry (Chinese users must
# see exactly the same).
HELP_ZH = """千星机器人命令（英文命令与中文关键词效果相同）：
/start 开始 · /join 加入 — 加入千星计划
/bind 邀请码 · 绑定 邀请码 — 绑定邀请人
/poster · 海报 — 我的邀请海报
/team · 团队 — 我的团队与业绩
/progress · 进度 — 升级进度
/level · 等级 — 我的等级与佣金比例
/earnings · 收益 — 我的收益
/statement · 明细 — 收益明细
/withdraw 金额 · 提现 100 — 提现到微信零钱（需确认）
/products · 商品 — 选品库
/markup 商品编码 金额 · 加价 SKU 5 — 设置我的加价
/promo 商品编码 · 推广 SKU — 推广链接与海报
/live · 直播 — 我的直播；直播 12-08 20:00 标题 预告，改期，取消
/golive 编号 · 开播 12 — 开始预告的直播（不写编号即立即开播）
/endlive 编号 · 下播 12 — 结束直播（订单进入结算）
/reserve 编号 · 预约 编号 — 预约直播，开播前提醒你
/livecard 编号 · 直播卡片 编号 — 生成可转发到群里的直播预约卡片
/reservations · 预约人数 — 查看我的直播预约人数
/liveposter 编号 · 预约海报 编号 — 生成直播预约海报（扫码预约）
/dashboard · 看板 — 直播实时数据和提示
/vote 问题 | 选项A | 选项B · 投票 — 直播中发起投票
/talk [编号] · 话术 — 直播话术（开场、商品讲解、福利、收尾）
/funnel · 漏斗 — 我的转化漏斗和改进建议
/claim 券码 · 领券 券码 — 领取优惠券（仅私聊）
/coupons · 我的券 — 查看我的优惠券（仅私聊）
/groupbuy · 拼团 — 正在进行的拼团；拼团 编号 发出拼团卡片
/groupposter 团编号 · 拼团海报 团编号 — 生成拼团海报（扫码参团）
/cancel 订单号 · 取消订单 订单号 — 取消未付款的订单
/refund 订单号 原因 · 退款 订单号 原因 — 申请退款
/script [15|30|60] [商品编码] [主题] · 文案 — 带货短视频文案（含字幕）
/style 风格 · 风格 亲切 — 设置我的文案风格（20 字以内）
/answer 编号 内容 · 回复 编号 内容 — 回复转给你的群友问题
/vouchers · 我的卡券 — 查看卡密（仅私聊）
/resend 订单号 · 补发 订单号 — 重新发送发货通知
/help · 帮助 — 本说明"""

KEYWORDS_ZH = {
    "开始": "start", "加入": "join", "加入千星": "join", "绑定": "bind", "绑定邀请码": "bind",
    "海报": "poster", "邀请海报": "poster", "团队": "team", "我的团队": "team", "进度": "progress",
    "升级进度": "progress", "等级": "level", "我的等级": "level", "收益": "earnings", "我的收益": "earnings",
    "明细": "statement", "收益明细": "statement", "提现": "withdraw", "商品": "products", "选品": "products",
    "货架": "products", "加价": "markup", "推广": "promo", "文案": "script", "风格": "style", "回复": "answer",
    "话术": "talk", "直播话术": "talk", "漏斗": "funnel",
    "我的卡券": "vouchers", "卡券": "vouchers", "卡密": "vouchers", "补发": "resend", "帮助": "help", "菜单": "help",
    # live commerce (issue 13)
    "直播": "live", "预告": "live", "开播": "golive", "下播": "endlive", "预约": "reserve", "直播卡片": "live_card",
    "预约人数": "reservations", "预约海报": "reserve_poster", "看板": "dashboard", "数据": "dashboard",
    "直播数据": "dashboard", "投票": "vote",
    # group selling and self-service (issue 14)
    "领券": "claim", "我的券": "coupons", "我的优惠券": "coupons", "拼团": "groupbuy", "拼团海报": "groupposter",
    "取消订单": "cancel_order", "退款": "refund_request",
}


def _click(label: str, name: str) -> dict[str, str]:
    return {"type": "click", "name": label, "key": menu_key(name)}


WECHAT_MENU_ZH = {"button": [
    {"name": "推广", "sub_button": [_click("邀请海报", "poster"), _click("选品推广", "products"),
                                   _click("带货文案", "script")]},
    {"name": "团队", "sub_button": [_click("我的团队", "team"), _click("升级进度", "progress"),
                                   _click("我的等级", "level")]},
    {"name": "我的", "sub_button": [_click("我的收益", "earnings"), _click("收益明细", "statement"),
                                   _click("提现", "withdraw"), _click("我的卡券", "vouchers"),
                                   _click("帮助", "help")]},
]}


def labels(rows: tuple[tuple[Button, ...], ...]) -> list[list[tuple[str, str | None]]]:
    return [[(b.text, b.data) for b in row] for row in rows]


def test_the_help_text_is_generated_in_the_order_of_declaration():
    assert commands.help_text() == HELP_ZH == commands.HELP
    with use_locale("en"):
        english = commands.help_text()
    assert english.splitlines()[0] == "Qianxing bot commands:"
    assert "/withdraw AMOUNT — withdraw to your WeChat wallet (asks to confirm)" in english
    assert len(english.splitlines()) == len(HELP_ZH.splitlines())


def test_the_chat_menus_are_generated():
    assert labels(commands.menu("main")) == [
        [("邀请海报", "CMD_POSTER"), ("我的团队", "CMD_TEAM"), ("升级进度", "CMD_PROGRESS")],
        [("我的收益", "CMD_EARNINGS"), ("选品", "CMD_PRODUCTS"), ("我的卡券", "CMD_VOUCHERS")]]
    assert labels(commands.menu("join")) == [[("加入千星计划", "CMD_JOIN"), ("我的卡券", "CMD_VOUCHERS"),
                                              ("帮助", "CMD_HELP")]]
    assert commands.MAIN_MENU == commands.menu("main") and commands.JOIN_MENU == commands.menu("join")
    with use_locale("en"):
        assert labels(commands.menu("join")) == [[("Join Qianxing", "CMD_JOIN"), ("My vouchers", "CMD_VOUCHERS"),
                                                  ("Help", "CMD_HELP")]]


def test_the_keyword_and_slash_tables_are_generated():
    assert commands.KEYWORDS == KEYWORDS_ZH
    renamed = {"live_card": "livecard", "reserve_poster": "liveposter", "cancel_order": "cancel",
               "refund_request": "refund"}  # slash names differ from the command's
    assert commands.SLASH == {**{renamed.get(name, name): name for name in commands.COMMANDS}, "menu": "help",
                              "lingquan": "claim", "quan": "coupons"}  # pinyin aliases
    takes_args = {name for name, (_, _, args) in commands.COMMANDS.items() if args}
    assert takes_args == {"start", "bind", "withdraw", "markup", "promo", "script", "resend", "live", "golive",
                          "endlive", "reserve", "live_card", "reservations", "reserve_poster", "dashboard", "vote",
                          "claim", "groupbuy", "groupposter", "cancel_order", "refund_request", "style", "answer",
                          "talk"}
    assert commands.PRIVATE_ONLY == {"withdraw", "vouchers", "statement", "earnings", "resend",
                                     "withdraw_confirm", "withdraw_cancel", "live", "golive", "endlive",
                                     "dashboard", "claim", "coupons", "cancel_order", "refund_request", "talk",
                                     "funnel"}
    # button-only commands have no slash name or keyword, and their menu key is refused as stale
    assert "withdraw_confirm" in commands.HANDLERS and "withdraw_confirm" not in commands.COMMANDS
    assert commands.parse(_incoming(callback="CMD_WITHDRAW_CONFIRM")) == Command("stale_button")


def _incoming(text: str = "", callback: str | None = None):  # noqa: ANN202
    from bots.types import Incoming, Member

    return Incoming("console", "c", "private", Member("c"), text=text, callback=callback)


def test_the_wechat_menu_is_generated_within_wechats_limits():
    menu = commands.wechat_menu()
    assert menu == WECHAT_MENU_ZH == wechat_oa.MENU
    assert len(menu["button"]) <= 3
    for top in menu["button"]:
        assert len(top["name"].encode()) <= 16 and 1 <= len(top["sub_button"]) <= 5
        for sub in top["sub_button"]:
            assert len(sub["name"].encode()) <= 60
            assert commands.parse(_incoming(callback=sub["key"])).name != "stale_button"
    # the WeChat menu is Chinese whatever the locale in force
    with use_locale("en"):
        assert commands.wechat_menu() == WECHAT_MENU_ZH


def test_qianxing_wechat_menu_prints_the_generated_menu(cli: Callable[..., Any]):
    result = cli("wechat", "menu", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == commands.wechat_menu()


def test_a_command_cannot_be_declared_twice():
    def handler(ctx, cmd):  # noqa: ANN001, ANN202
        return []

    before = (dict(commands.REGISTRY), dict(commands.SLASH), dict(commands.KEYWORDS))
    with pytest.raises(ValueError, match="declared twice"):
        command("withdraw")(handler)
    with pytest.raises(ValueError, match="already the command 'withdraw'"):
        command("payout", slash=("/withdraw",))(handler)
    with pytest.raises(ValueError, match="already the command 'withdraw'"):
        command("payout", keywords=("提现",))(handler)
    with pytest.raises(ValueError, match="unknown menu"):
        command("payout", menu=MenuPlace("sidebar", 0, 0, "x"))(handler)
    assert (commands.REGISTRY, commands.SLASH, commands.KEYWORDS) == before


def test_telegram_commands_come_from_the_help_lines():
    private = dict(commands.telegram_commands(private=True))
    group = dict(commands.telegram_commands(private=False))
    assert private["withdraw"] == "提现到微信零钱（需确认）" and private["help"] == "本说明"
    assert "start" not in private  # /start is what Telegram's own start button sends
    assert set(private) - set(group) == {"earnings", "statement", "withdraw", "vouchers", "resend", "live", "golive",
                                         "endlive", "dashboard", "claim", "coupons", "cancel", "refund", "talk",
                                         "funnel"}
    with use_locale("en"):
        assert dict(commands.telegram_commands(private=True))["withdraw"] == \
            "withdraw to your WeChat wallet (asks to confirm)"


@pytest.fixture
def session(settings: Settings, telegram: FakeTelegramAPI) -> Iterator[TelegramSession]:
    telegram.my_commands.clear()
    with TelegramSession(settings) as s:
        yield s


def test_set_my_commands_reaches_the_bot_api_per_scope_and_language(session: TelegramSession,
                                                                     telegram: FakeTelegramAPI):
    assert session.set_commands() == 6
    menus = telegram.my_commands
    assert set(menus) == {(scope, lang) for scope in ("all_private_chats", "all_group_chats")
                          for lang in ("", "zh", "en")}
    private_zh = {c["command"]: c["description"] for c in menus[("all_private_chats", "zh")]}
    assert private_zh == dict(commands.telegram_commands(private=True))
    assert menus[("all_private_chats", "")] == menus[("all_private_chats", "zh")]  # the default is Chinese
    english = {c["command"]: c["description"] for c in menus[("all_private_chats", "en")]}
    assert english["poster"] == "my invite poster" and list(english) == list(private_zh)
    assert "withdraw" not in {c["command"] for c in menus[("all_group_chats", "en")]}


def test_the_webhook_switch_publishes_the_command_menu(cli: Callable[..., Any], telegram: FakeTelegramAPI):
    telegram.my_commands.clear()
    result = cli("tgbot", "--set-webhook", "https://shop.example.com/webhooks/telegram")
    assert result.exit_code == 0, result.output
    assert {c["command"] for c in telegram.my_commands[("all_private_chats", "en")]} >= {"withdraw", "help"}


def test_a_refused_command_menu_does_not_stop_the_bot(session: TelegramSession, telegram: FakeTelegramAPI,
                                                      monkeypatch: pytest.MonkeyPatch):
    assert publish_commands(session) is True and telegram.my_commands

    def unreachable() -> int:
        raise OSError("connection refused")

    monkeypatch.setattr(session, "set_commands", unreachable)
    assert publish_commands(session) is False


def test_the_polling_process_publishes_the_command_menu_when_it_starts(settings: Settings, telegram: FakeTelegramAPI,
                                                                        rt: Any):
    import threading

    from qianxing.cli.tgbot import run_polling

    telegram.my_commands.clear()
    stop = threading.Event()
    stop.set()  # start, publish, finish what is pending, stop
    assert run_polling(settings, stop, timeout=0) == 0
    assert ("all_group_chats", "zh") in telegram.my_commands


@pytest.fixture
def declared() -> Iterator[None]:
    """Commands declared by a test are forgotten after it."""
    from bots.commands import registry

    tables = (registry.REGISTRY, registry.HANDLERS, registry.COMMANDS, registry.SLASH, registry.KEYWORDS)
    saved = [dict(t) for t in tables] + [list(registry.KEYWORDS_LONGEST_FIRST)]
    yield
    for table, before in zip(tables, saved, strict=False):
        table.clear()
        table.update(before)
    registry.KEYWORDS_LONGEST_FIRST[:] = saved[-1]


def test_declared_creator_check_and_parser_run_before_the_handler(rt: Any, declared: None):
    from bots.commands import ChatInputError, parse_yuan
    from tests.bots.conftest import join, say, text_of

    seen: list[tuple[str, Any]] = []
    parsed: list[str] = []

    def amount(text: str) -> int:
        parsed.append(text)
        if not text:
            raise ChatInputError("请发送：/probe 金额")
        return parse_yuan(text)

    @command("probe", slash=("probe",), creator=True, args=amount)
    def cmd_probe(ctx, cmd):  # noqa: ANN001, ANN202
        seen.append((ctx.creator.code, cmd.value))
        return [Reply(text="ok")]

    assert commands.COMMANDS["probe"][2] is True  # a parser means the command takes arguments
    # not a creator: told to join first, before the arguments are looked at
    replies = say("/probe abc", who="shopper")
    assert replies == say("/team", who="shopper") and "/join" in text_of(replies)
    assert parsed == [] and seen == []
    # a creator: the parser's refusal is the polite reply, the handler does not run
    me = join("ann")
    assert text_of(say("/probe abc")) == "「abc」不是有效金额，请输入数字，例如 100 或 99.50"
    assert text_of(say("/probe")) == "请发送：/probe 金额"
    assert seen == []
    # and good input reaches the handler typed, with the creator
    assert text_of(say("/probe ¥12.5")) == "ok"
    assert seen == [(me.code, 1250)]
