"""The conversation core end to end: Incoming in through bots.core.handle, Reply out, on the
real database and Redis. Every command in its English and Chinese forms, deep-link binding,
the withdrawal confirmation, vouchers and resend, and bad input that must never raise."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bots import commands
from bots.core import SORRY
from bots.types import Reply
from models import delivery, ledger
from models.db import db
from models.events import Event
from models.network import Creator
from models.withdrawals import Withdrawal
from tests.bots.conftest import (
    bind,
    button_data,
    creator_of,
    join,
    say,
    settle_and_release,
    text_of,
    user_of,
)
from tests.factories import earn, sell

# English form, Chinese keyword, menu key: the same command.
SAME = [
    ("/help", "帮助", "CMD_HELP"),
    ("/team", "团队", "CMD_TEAM"),
    ("/progress", "进度", "CMD_PROGRESS"),
    ("/level", "等级", "CMD_LEVEL"),
    ("/earnings", "收益", "CMD_EARNINGS"),
    ("/statement", "明细", "CMD_STATEMENT"),
    ("/products", "商品", "CMD_PRODUCTS"),
    ("/vouchers", "我的卡券", "CMD_VOUCHERS"),
    ("/poster", "海报", "CMD_POSTER"),
    ("/script", "文案", "CMD_SCRIPT"),
    ("/withdraw", "提现", "CMD_WITHDRAW"),
    ("/markup", "加价", None),
    ("/promo", "推广", None),
    ("/resend", "补发", None),
    ("/bind", "绑定", None),
]


def _comparable(replies: list[Reply]) -> list[tuple]:
    return [(r.text, r.image_key, r.link, r.private, r.buttons) for r in replies]


@pytest.fixture
def ann(rt, shop):  # noqa: ANN001, ANN201
    """Ann, a one-star creator with a sold, settled and released order: 100 yuan card, 10%."""
    sku = shop.card_sku(keys=20, price=10_000, code="CARD-A")
    creator = join("ann", rank=1)
    sell(rt, sku.code, creator.code)
    settle_and_release(rt)
    return creator


@pytest.mark.parametrize("english, chinese, menu", SAME)
def test_english_chinese_and_menu_forms_answer_the_same(ann, english, chinese, menu):
    # when ann sends the English command, the Chinese keyword and presses the menu item
    en, zh = say(english), say(chinese)
    # then the answers are the same, and not the fallback for unknown text
    assert _comparable(en) == _comparable(zh)
    assert en and "没有听懂" not in text_of(en) and "没有这个命令" not in text_of(en)
    if menu:
        assert _comparable(say(callback=menu)) == _comparable(en)


def test_full_width_and_glued_forms(ann):
    # given full-width characters (a Chinese keyboard) and an amount glued to the keyword
    assert text_of(say("／ｈｅｌｐ")) == text_of(say("/help"))
    assert text_of(say("提现100")) == text_of(say("/withdraw 100")) == "可提现余额不足：当前可提现 ¥10.00。"
    assert text_of(say("推广CARD-A")) == text_of(say("/promo CARD-A"))
    # a keyword that takes no argument must be the whole message: this is a question
    assert commands.parse(commands_incoming("商品怎么买")) is None
    assert commands.parse(commands_incoming("文案怎么写")) is None


def commands_incoming(text: str):  # noqa: ANN201
    from bots.types import Incoming, Member

    return Incoming("console", "x", "private", Member("x"), text=text)


def test_telegram_style_command_with_bot_mention(ann):
    assert text_of(say("/team@qianxing_bot")) == text_of(say("/team"))


def test_earnings_and_statement_show_released_commission_in_yuan(ann):
    # given ann's own sale of 100 yuan at 10%, settled and released
    earned = text_of(say("/earnings"))
    # then 10.00 yuan is available, with two decimals
    assert "可提现：¥10.00" in earned and "待结算：¥0.00" in earned
    statement = text_of(say("明细"))
    assert "佣金入账" in statement and "结算可提现" in statement and "+¥10.00" in statement


def test_team_progress_and_level(ann, rt):
    # given ben, invited by ann, who sold one 100-yuan card
    ben = join("ben")
    bind(ben, ann)
    sell(rt, "CARD-A", ben.code, openid="shopper-2")
    team = text_of(say("团队"))
    assert "直属成员 1 人，销售额 ¥100.00" in team and "ben" in team
    progress = text_of(say("/progress", who="ben"))
    assert "当前等级：未入星" in progress and "下一等级：一星" in progress
    assert "直接邀请 0/2 还差 2" in progress and "已邀请0人，还差2人升级" in progress
    level = text_of(say("/level"))
    assert "当前等级：一星" in level and "10%" in level and "5%" in level and "3%" in level
    assert "与邀请人数无关" in level


def test_creator_commands_ask_a_shopper_to_join_first(rt):
    for cmd in ("/team", "/progress", "/level", "/earnings", "/statement", "/withdraw 100", "/products",
                "/markup X 1", "/promo X", "/poster"):
        replies = say(cmd, who="shopper")
        assert "/join" in text_of(replies), cmd
        assert any(b.data == "CMD_JOIN" for r in replies for row in r.buttons for b in row)
    # and nobody became a creator by asking
    with db.connection_context():
        assert Creator.select().count() == 0


def test_join_is_idempotent(rt):
    first = text_of(say("/join", who="zoe"))
    again = text_of(say("加入", who="zoe"))
    code = creator_of("zoe").code
    assert "欢迎加入" in first and code in first
    assert "已经是千星创作者" in again and code in again


# ---- binding --------------------------------------------------------------------------------------

def test_telegram_deep_link_joins_and_binds(ann):
    # when a Telegram user opens ann's deep link
    replies = say("/start", who="5005", platform="telegram", payload=ann.code)
    # then they joined as a creator and are bound to ann, via telegram
    assert "绑定成功" in text_of(replies) and ann.code in text_of(replies)
    child = creator_of("5005", "telegram")
    assert (child.parent_id, child.bound_via) == (ann.id, "telegram")


def test_wechat_qr_scene_binds_via_wechat_qr(ann):
    say(platform="wechat", who="oWX1", payload=ann.code)
    child = creator_of("oWX1", "wechat")
    assert (child.parent_id, child.bound_via) == (ann.id, "wechat_qr")


def test_typed_bind_and_first_binding_wins(ann):
    other = join("olga")
    assert "绑定成功" in text_of(say(f"/bind {ann.code}", who="carl"))
    assert creator_of("carl").bound_via == "typed"
    # the same code again: already bound to ann, nothing changes
    assert "无需重复绑定" in text_of(say(f"绑定 {ann.code}", who="carl"))
    # another code: refused politely, ann stays the parent
    assert "已经绑定了邀请人" in text_of(say(f"/bind {other.code}", who="carl"))
    assert creator_of("carl").parent_id == ann.id


def test_binding_refusals_are_polite(ann):
    assert "不能绑定自己" in text_of(say(f"/bind {ann.code}"))
    # ben under ann; ann binding to ben would be a cycle
    say(f"/bind {ann.code}", who="ben")
    assert "已经在你的团队" in text_of(say(f"/bind {creator_of('ben').code}"))
    assert "邀请码不存在" in text_of(say("/bind ZZZZ9999", who="dan"))
    assert "格式不对" in text_of(say("/bind !!", who="dan"))
    # dan joined (a refused code never loses the invitee) but has no parent
    assert creator_of("dan").parent_id is None
    assert "/bind 邀请码" in text_of(say("/bind", who="dan"))


def test_start_without_payload_welcomes(rt):
    replies = say("/start", who="newbie")
    assert "欢迎来到千星" in text_of(replies)
    assert button_data(replies, "加入千星计划") == "CMD_JOIN"
    # a WeChat subscribe without a scene is a start too
    assert "欢迎来到千星" in text_of(say(platform="wechat", who="oSUB", payload=""))


def test_product_deep_link_shows_the_creators_price_without_binding(ann, shop):
    say("/markup CARD-A 5")
    payload = commands.product_payload("CARD-A", ann.code)
    replies = say("/start", who="6006", platform="telegram", payload=payload)
    text = text_of(replies)
    assert "¥105.00" in text and f"pages/product/index?sku=CARD-A&ref={ann.code}" in text
    with db.connection_context():
        assert Creator.select().count() == 1  # the shopper did not become a creator


# ---- withdrawals ----------------------------------------------------------------------------------

def _withdrawals() -> list[Withdrawal]:
    with db.connection_context():
        return list(Withdrawal.select())


def _available(creator: Creator) -> int:
    account = ledger.creator_account(creator.id, ledger.AVAILABLE)
    with db.connection_context():
        return -ledger.balances([account])[account]


@pytest.fixture
def rich(rt):  # noqa: ANN001, ANN201
    creator = join("rich", rank=1)
    earn(creator, 50_000)
    return creator


def test_withdraw_asks_first_and_confirm_requests_once(rich):
    # when rich asks to withdraw 200 yuan
    offer = say("/withdraw 200", who="rich")
    text = text_of(offer)
    # then the amount, the 1% fee and the net are shown, and nothing moved yet
    assert "确认提现 ¥200.00" in text and "手续费 ¥2.00" in text and "实际到账 ¥198.00" in text
    assert _withdrawals() == [] and _available(rich) == 50_000
    ok = button_data(offer, "确认")
    # when the confirm button is pressed twice
    first = text_of(say(callback=ok, who="rich"))
    second = text_of(say(callback=ok, who="rich"))
    # then one withdrawal exists and the same answer is given twice
    found = _withdrawals()
    assert len(found) == 1 and found[0].amount_fen == 20_000 and found[0].fee_fen == 200
    assert found[0].request_key == ok.split(":")[2]
    assert first == second and found[0].no in first
    assert _available(rich) == 30_000


def test_cancel_does_nothing_and_a_later_confirm_is_refused(rich):
    offer = say("提现 150", who="rich")
    assert "已取消" in text_of(say(callback=button_data(offer, "取消"), who="rich"))
    assert "已经取消" in text_of(say(callback=button_data(offer, "确认"), who="rich"))
    assert _withdrawals() == [] and _available(rich) == 50_000


def test_cancel_after_confirm_is_refused(rich):
    offer = say("/withdraw 150", who="rich")
    say(callback=button_data(offer, "确认"), who="rich")
    assert "无法取消" in text_of(say(callback=button_data(offer, "取消"), who="rich"))
    assert len(_withdrawals()) == 1


def test_an_expired_confirmation_does_nothing(rich, rt):
    offer = say("/withdraw 150", who="rich")
    ok = button_data(offer, "确认")
    ttl = rt.redis.ttl(f"qx:chat:wd:{ok.split(':')[2]}")
    assert 0 < ttl <= commands.WITHDRAW_CONFIRM_TTL_S
    # when the token's time runs out (as Redis would expire it)
    rt.redis.delete(f"qx:chat:wd:{ok.split(':')[2]}")
    assert "已过期" in text_of(say(callback=ok, who="rich"))
    assert _withdrawals() == []
    # and a made-up token is no better
    assert "已过期" in text_of(say(callback="wd:ok:AAAAAAAAAAAAAAAA", who="rich"))
    assert "失效" in text_of(say(callback="wd:ok:bad", who="rich"))


def test_someone_elses_confirm_button_is_refused(rich):
    join("thief", rank=1)
    offer = say("/withdraw 150", who="rich")
    assert "不是发给你的" in text_of(say(callback=button_data(offer, "确认"), who="thief"))
    assert "不是发给你的" in text_of(say(callback=button_data(offer, "取消"), who="thief"))
    assert _withdrawals() == []


@pytest.mark.parametrize("amount, expected", [
    ("50", "最低提现 ¥100.00"),
    ("600", "可提现余额不足：当前可提现 ¥500.00"),
    ("abc", "不是有效金额"),
    ("-100", "不是有效金额"),
    ("100.123", "最多两位小数"),
    ("99999999999999999999999", "金额太大"),
    ("1e9", "不是有效金额"),
    ("💰", "不是有效金额"),
])
def test_withdraw_bad_amounts_are_explained(rich, amount, expected):
    assert expected in text_of(say(f"/withdraw {amount}", who="rich"))
    assert _withdrawals() == []


def test_withdraw_without_amount_shows_the_balance(rich):
    text = text_of(say("提现", who="rich"))
    assert "当前可提现 ¥500.00" in text and "最低提现 ¥100.00" in text


def test_withdraw_to_credit_has_no_fee(rich):
    offer = say("/withdraw 100 credit", who="rich")
    assert "购物金" in text_of(offer)
    done = text_of(say(callback=button_data(offer, "确认"), who="rich"))
    assert "已转为购物金 ¥100.00" in done
    assert _withdrawals()[0].fee_fen == 0


def test_withdraw_in_debt_is_refused(rt):
    creator = join("debtor", rank=1)
    earn(creator, -5_000)
    assert "欠款" in text_of(say("/withdraw 100", who="debtor"))


# ---- vouchers and resend --------------------------------------------------------------------------

@pytest.fixture
def bought(rt, shop, run_jobs):  # noqa: ANN001, ANN201
    """A console shopper 'sue' bought one card (delivered by the real jobs)."""
    shop.card_sku(keys=5, price=1990, code="CARD-V")
    say("/start", who="sue")
    order_id = sell(rt, "CARD-V", None, user=user_of("sue"))
    from models.payments import Outcome
    from tasks import maintenance

    maintenance.dispatch_payment(order_id, Outcome.PAID)  # what the payment webhook does next
    run_jobs()
    with db.connection_context():
        from models.orders import Order

        return Order.get_by_id(order_id)


def test_vouchers_are_revealed_privately_and_recorded(bought):
    replies = say("/vouchers", who="sue")
    assert replies[0].private is True
    assert "CARD-V-KEY-" in replies[0].text
    with db.connection_context():
        v = delivery.Voucher.get(delivery.Voucher.order == bought.id)
        assert v.revealed_at is not None
        assert Event.select().where(Event.topic == "voucher.revealed").count() == 1


def test_vouchers_in_a_group_are_never_shown(bought):
    replies = say("/vouchers", who="sue", chat="grp-1")
    assert text_of(replies) == "请私聊机器人查看卡券。"
    assert "KEY" not in text_of(replies)
    with db.connection_context():
        assert delivery.Voucher.get(delivery.Voucher.order == bought.id).revealed_at is None


def test_no_vouchers_yet(rt):
    assert "还没有卡券" in text_of(say("我的卡券", who="nobody"))


def test_resend_repeats_the_delivery_notice_of_my_order_only(bought):
    replies = say(f"/resend {bought.no}", who="sue")
    text = text_of(replies)
    assert replies[0].private and bought.no in text and "CARD-V-KEY-" in text and "¥19.90" in text
    # another user cannot get it (and learns nothing)
    assert "没有找到你的这个订单" in text_of(say(f"补发 {bought.no}", who="mallory"))
    assert "没有找到你的这个订单" in text_of(say("补发 nonsense-#1", who="sue"))


def test_resend_is_rate_limited_per_user(bought, rt):
    limit = rt.settings.RESEND_PER_HOUR
    for _ in range(limit):
        assert bought.no in text_of(say(f"/resend {bought.no}", who="sue"))
    refused = text_of(say(f"/resend {bought.no}", who="sue"))
    assert "太频繁" in refused and bought.no not in refused
    # another user's budget is separate
    assert "没有找到" in text_of(say(f"/resend {bought.no}", who="other"))


def test_resend_of_an_unpaid_order_says_so(rt, shop):
    shop.card_sku(keys=2, price=1000, code="CARD-U")
    say("/start", who="ulla")
    from models.orders import OrderRequest, place_order

    with db.connection_context():
        order, _ = place_order(user_of("ulla"), OrderRequest(sku="CARD-U", quantity=1), rt.policy,
                               client_ip="127.0.0.1")
    assert "待付款" in text_of(say(f"/resend {order.no}", who="ulla"))


# ---- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("/frobnicate", "没有 /frobnicate 这个命令"),
    ("/" + "x" * 500, "这个命令"),
    ("/markup", "加价 商品编码 金额"),
    ("/markup CARD-A", "加价 商品编码 金额"),
    ("/markup CARD-A lots", "不是有效金额"),
    ("/markup NOPE 1", "没有找到这个商品"),
    ("/promo", "推广 商品编码"),
    ("/promo " + "Z" * 300, "没有找到这个商品"),
    ("/resend", "补发 订单号"),
    ("hello 😀😀😀", "没有听懂"),
    ("长" * 10_000, "没有听懂"),
    ("\x00\x01\x02", "没有听懂"),
])
def test_bad_input_gets_a_polite_reply(ann, text, expected):
    replies = say(text)
    assert expected in text_of(replies)


def test_stale_buttons(ann):
    assert "失效" in text_of(say(callback="CMD_NOPE"))
    assert "失效" in text_of(say(callback="something:else"))
    assert "失效" in text_of(say(callback=""))


@h_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=300),
    st.builds(lambda c, a: f"{c} {a}", st.sampled_from(sorted(commands.KEYWORDS) + [f"/{s}" for s in commands.SLASH]),
              st.text(max_size=40)),
))
def test_any_text_gets_replies_and_never_raises(ann, text):
    replies = say(text)
    assert replies and all(isinstance(r, Reply) for r in replies)
    assert all(r.text for r in replies)
    assert all(r.text != SORRY for r in replies)  # no unexpected error behind the reply


def test_an_unexpected_failure_is_logged_without_the_message_and_answered_politely(ann, rt, caplog, monkeypatch):
    # given Redis is unreachable (the withdrawal offer cannot be stored)
    earn(ann, 50_000)
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(rt, "redis", dead)
    with caplog.at_level(logging.ERROR, logger="bots.core"):
        replies = say("/withdraw 123.45")
    # then the user gets a polite "try later", and the log names the error but not the message
    assert text_of(replies) == "抱歉，系统开小差了，请稍后再试。"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ConnectionError" in logged and "123.45" not in logged
    assert _withdrawals() == []


def test_withdraw_real_settled_earnings_keeps_the_books_clean(rt, shop):
    # given ten 100-yuan cards sold through a one-star creator, settled and released: 100 yuan
    sku = shop.card_sku(keys=20, price=10_000, code="CARD-W")
    creator = join("seller", rank=1)
    for i in range(10):
        sell(rt, sku.code, creator.code, openid=f"buyer-w{i}")
    settle_and_release(rt)
    assert "可提现：¥100.00" in text_of(say("/earnings", who="seller"))
    # when the creator withdraws all of it and confirms
    offer = say("/withdraw 100", who="seller")
    done = text_of(say(callback=button_data(offer, "确认"), who="seller"))
    # then the withdrawal waits for review (a first withdrawal: risk rule withdrawal_first) and
    # its payout, and the ledger still verifies
    assert "提现已提交，等待人工审核：¥100.00，手续费 ¥1.00，实际到账 ¥99.00" in done
    assert _available(creator) == 0
    from models import settlement

    with db.connection_context():
        assert settlement.verify() == []
    assert "提现中：¥100.00" in text_of(say("收益", who="seller"))


def test_two_simultaneous_confirm_presses_make_one_withdrawal(rich):
    import threading

    ok = button_data(say("/withdraw 100", who="rich"), "确认")
    barrier = threading.Barrier(4)
    answers: list[str] = []

    def press_once() -> None:
        barrier.wait()
        answers.append(text_of(say(callback=ok, who="rich")))

    threads = [threading.Thread(target=press_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_withdrawals()) == 1
    assert len(set(answers)) == 1 and "提现已提交" in answers[0]
    assert _available(rich) == 40_000
