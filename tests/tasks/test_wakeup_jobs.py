"""The daily wake-up job (tasks/wakeup.py) with the real sender, drain jobs and the fake Telegram
and WeChat servers: each dormant buyer gets the wakeup coupon and one push on the channel that
may reach them (Telegram, WeChat inside 48 h, the subscribe message while a consent remains),
exactly once per period even when the job runs twice or twice at once; an unreachable buyer
still gets the coupon; one push that fails does not cost the others theirs."""

from __future__ import annotations

import datetime as dt
import threading

from models import wakeup
from models.chat import OutboundMessage
from models.coupons import CouponGrant
from models.db import db, utcnow
from models.wakeup import WakeupSent
from tasks.wakeup import wake_dormant
from tests.factories import buyer, campaign, dormant, paid


def grants(coupon_id: int) -> dict[int, str]:
    with db.connection_context():
        return {g.user_id: g.source_key for g in CouponGrant.select().where(CouponGrant.coupon == coupon_id)}


def channels() -> dict[int, str | None]:
    with db.connection_context():
        return {w.user_id: w.channel for w in WakeupSent.select()}


def test_each_dormant_buyer_gets_the_coupon_and_one_push_on_their_channel(rt, telegram, fake_wechat, run_jobs,
                                                                          shop):
    fake_wechat.custom_messages.clear()
    fake_wechat.subscribe_messages.clear()
    sku = shop.card_sku(keys=10)
    made = campaign("wakeup")
    # given dormant buyers on Telegram, on WeChat inside its window, on the mini-program with one
    # consent, one nobody can reach (WeChat window closed, no consent), plus a recent buyer and a
    # user who never bought
    tg = dormant(sku, "wake-tg", telegram="7001")
    wx = dormant(sku, "wake-wx", wechat="oa-wake")
    mini = dormant(sku, "wake-mini")
    lost = dormant(sku, "wake-lost", wechat="oa-lost", wechat_seen=utcnow() - dt.timedelta(days=3))
    paid(sku, "wake-recent", dispatch=False)
    buyer("wake-never")
    with db.connection_context():
        wakeup.accept_consent(mini.id, "promo", 1, cap=10)
    # when the job runs twice, then the drains
    first = wake_dormant()
    second = wake_dormant()
    run_jobs()
    # then the four dormant buyers got the coupon once (the wake-up period's key), nobody else
    period = first["period"]
    assert grants(made.id) == {u.id: f"wakeup:{period}" for u in (tg, wx, mini, lost)}
    assert (first["woken"], first["pushed"], first["unreachable"], second["woken"]) == (4, 3, 1, 0)
    # and one push each on the channel the rule picks; the unreachable one is recorded without one
    assert channels() == {tg.id: "telegram", wx.id: "wechat", mini.id: "wxa", lost.id: None}
    assert len(telegram.sent_to("7001")) == 1
    assert made.name in telegram.sent_to("7001")[0].text
    assert [m["touser"] for m in fake_wechat.custom_messages] == ["oa-wake"]
    assert [(m["touser"], m["template_id"]) for m in fake_wechat.subscribe_messages] == [
        ("wake-mini", rt.settings.WAKEUP_SUBSCRIBE_TEMPLATE_ID)]
    # and the consent is used up
    with db.connection_context():
        assert wakeup.consents_of(mini.id) == 0
        assert WakeupSent.get(WakeupSent.user_id == tg.id).grant_id is not None


def test_no_campaign_coupon_means_nobody_is_woken(rt, shop):
    sku = shop.card_sku(keys=2)
    dormant(sku, "wake-nocoupon", telegram="7101")
    # when the job runs without an active wakeup coupon
    result = wake_dormant()
    # then nothing is written
    assert result == {"skipped": "no wakeup campaign coupon"} and channels() == {}


def test_two_runs_at_once_wake_each_buyer_exactly_once(rt, telegram, run_jobs, shop):
    sku = shop.card_sku(keys=20)
    made = campaign("wakeup")
    fans = [dormant(sku, f"wake-race-{i}", telegram=str(7200 + i)) for i in range(12)]
    results: list[dict] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(wake_dormant(chunk=5))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    # when two workers run the job at the same moment, in chunks of 5
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    run_jobs()
    # then every buyer was woken, granted and pushed exactly once between them
    assert failures == [] and sum(r["woken"] for r in results) == 12
    assert sorted(grants(made.id)) == sorted(f.id for f in fans)
    assert sorted(t.chat_id for t in telegram.sent) == sorted(str(7200 + i) for i in range(12))
    with db.connection_context():
        assert OutboundMessage.select().count() == 12


def test_one_push_that_fails_does_not_cost_the_others_theirs(rt, telegram, run_jobs, shop):
    sku = shop.card_sku(keys=10)
    made = campaign("wakeup")
    fans = [dormant(sku, f"wake-chunk-{i}", telegram=str(7300 + i)) for i in range(5)]
    # given one buyer who blocked the bot
    telegram.fail_next(403, chat_id="7302", times=5)
    # when the job writes the chunk and the drain sends it
    result = wake_dormant()
    run_jobs()
    # then the four others got their push, the blocked one's message failed alone
    assert result["woken"] == 5
    assert sorted(t.chat_id for t in telegram.sent) == ["7300", "7301", "7303", "7304"]
    with db.connection_context():
        states = {m.key: m.state for m in OutboundMessage.select()}
    period = result["period"]
    assert states[wakeup.message_key(period, fans[2].id)] == "failed"
    assert sum(1 for s in states.values() if s == "sent") == 4
    # and every one of them, the blocked one too, has the coupon in the wallet
    assert sorted(grants(made.id)) == sorted(f.id for f in fans)
    # and a later run in the same period wakes nobody again
    later = utcnow() + dt.timedelta(hours=1)
    if wakeup.period_of(later, rt.settings.WAKEUP_PERIOD_DAYS) == period:
        assert wake_dormant(now=later)["woken"] == 0
