"""Coupons in chat: 「领券 <code>」 / /claim and 「我的券」 / /coupons through the conversation
core, polite replies for every refusal (nothing written), private chats only, throttled."""

from __future__ import annotations

import datetime as dt

from bots.core import handle
from bots.types import Incoming, Member
from models.coupons import CouponGrant
from models.db import db, utcnow
from qianxing import wiring
from tests.bots.conftest import say, text_of, user_of
from tests.factories import coupon, coupon_state


def test_a_code_claimed_in_chat_lands_in_the_wallet(rt):  # noqa: ANN001
    # given 满100减10 with a code
    coupon(name="春季券", code="SPRING2026SALE", threshold_fen=10_000, amount_off_fen=1_000)
    # when Ann sends 领券 with the code typed loosely
    reply = text_of(say("领券 spring-2026 sale"))
    # then it is claimed, described, and in her wallet
    assert "领券成功" in reply and "春季券" in reply and "满¥100.00减¥10.00" in reply
    with db.connection_context():
        assert CouponGrant.select().where(CouponGrant.user_id == user_of("ann").id).count() == 1
    wallet = text_of(say("我的券"))
    assert "我的优惠券（1 张）" in wallet and "春季券" in wallet and "可用" in wallet
    # and the slash command says the same in English to an English speaker
    english = text_of(handle(Incoming("console", "ann", "private", Member("ann", "ann"), text="/coupons",
                                      locale="en"), wiring.runtime()))
    assert "My coupons (1)" in english and "¥10.00 off orders of ¥100.00 or more" in english


def test_every_bad_code_gets_a_polite_reply_and_writes_nothing(rt):  # noqa: ANN001
    # given an expired coupon and one Ann already claimed
    now = utcnow()
    coupon(code="OLDCODE2025X", starts_at=now - dt.timedelta(days=9), ends_at=now - dt.timedelta(days=1))
    coupon(code="ONCEONLY2026")
    say("领券 ONCEONLY2026")
    before = coupon_state()
    # when she sends bad codes, then a polite reply each and nothing written
    assert "没有这个券码" in text_of(say("领券 NOSUCHCODE99"))
    assert "不在有效期内" in text_of(say("/claim OLDCODE2025X"))
    assert "你已经领过这张券了" in text_of(say("领券 ONCEONLY2026"))
    assert "请发送：领券 券码" in text_of(say("领券"))
    assert coupon_state() == before


def test_coupons_are_private_only_and_claims_are_throttled(rt, settings, monkeypatch):  # noqa: ANN001
    # given a group chat, then the commands are not answered there with the wallet
    coupon(code="SPRING2026SALE")
    in_group = text_of(say("领券 SPRING2026SALE", chat="group-1"))
    assert "领券成功" not in in_group
    # given 2 claims per user a window, then the third attempt is refused politely
    monkeypatch.setattr(settings, "COUPON_CLAIM_RATE_PER_USER", 2)
    say("领券 NOSUCHCODE01")
    say("领券 NOSUCHCODE02")
    assert "领券太频繁了" in text_of(say("领券 SPRING2026SALE"))
    assert "你还没有优惠券" in text_of(say("我的券"))
