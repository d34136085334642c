"""The chat notifiers (bots.notify): delivery notices to Telegram through the sender, and to the
WeChat official account inside the 48-hour window with the mini-program subscribe message as
the fallback. Real wechatpy and aiogram clients against the fakes; the Telegram notice also
through the real order -> payment -> delivery pipeline."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from bots.notify import TelegramNotifier, WeChatOANotifier, build_notifiers, notice_key
from models.chat import ChatIdentity, OutboundAttempt, OutboundMessage
from models.db import db, utcnow
from models.notifications import Notice, Notification, NotifyError, send_user_notice
from models.orders import Order
from models.users import User
from qianxing.settings import SettingsError, load_settings
from tests.factories import api_paid, buyer
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.wechat_api import FakeWeChatAPI


def identity(user: User, platform: str, external_id: str, *, seen_ago: dt.timedelta | None) -> None:
    with db.connection_context():
        ChatIdentity.create(platform=platform, external_id=external_id, user=user, chat_id=external_id,
                            last_inbound_at=None if seen_ago is None else utcnow() - seen_ago)


def order_notice(order_id: int = 4242, no: str = "QX2026TEST0001") -> Notice:
    return Notice(kind="delivered", order_no=no, order_id=order_id, product="爱奇艺月卡", amount_fen=1990,
                  when="2026-11-23 10:00", page=f"pages/vouchers/index?order={order_id}")


def oa_notifier(rt) -> WeChatOANotifier:  # noqa: ANN001
    (notifier,) = build_notifiers(["wechat_oa"], rt.wechat, rt.settings.WECHAT_SUBSCRIBE_TEMPLATE_ID,
                                  sender=rt.sender)
    return notifier


def customs(fake: FakeWeChatAPI, openid: str) -> list[dict]:
    return [m for m in fake.custom_messages if m["touser"] == openid]


def subscribes(fake: FakeWeChatAPI, openid: str) -> list[dict]:
    return [m for m in fake.subscribe_messages if m["touser"] == openid]


def outbound(key: str) -> OutboundMessage:
    with db.connection_context():
        return OutboundMessage.get(OutboundMessage.key == key)


# ---- settings --------------------------------------------------------------------------------


def test_chat_channels_are_valid_notify_channels() -> None:
    assert load_settings(NOTIFY_CHANNELS="telegram,wechat_oa").notify_channels == ["telegram", "wechat_oa"]
    with pytest.raises(SettingsError, match="wechat_oa"):
        load_settings(NOTIFY_CHANNELS="telegram,carrier_pigeon")


# ---- Telegram --------------------------------------------------------------------------------


def test_telegram_notice_without_an_account_is_a_permanent_failure(rt) -> None:  # noqa: ANN001
    user = buyer("no-tg")
    with db.connection_context(), pytest.raises(NotifyError) as caught:
        TelegramNotifier(rt.sender).send(user, order_notice())
    assert caught.value.transient is False
    with db.connection_context():
        assert OutboundMessage.select().count() == 0


def test_telegram_notice_is_queued_once_and_sent_by_the_drain_job(rt, telegram: FakeTelegramAPI,  # noqa: ANN001
                                                                  run_jobs) -> None:  # noqa: ANN001
    user = buyer("tg-1")
    identity(user, "telegram", "700001", seen_ago=dt.timedelta(days=30))
    notifier = TelegramNotifier(rt.sender)
    # when the same notice is handed over twice (a retried notification job)
    with db.connection_context():
        notifier.send(user, order_notice())
        notifier.send(user, order_notice())
    # then one drain job sends it once, privately, with the voucher button and no card key
    assert rt.queue.count == 1
    run_jobs()
    (sent,) = telegram.sent_to(700001)
    assert "QX2026TEST0001" in sent.text and "爱奇艺月卡" in sent.text and "¥19.90" in sent.text
    markup = json.loads(sent.params["reply_markup"])
    assert markup["inline_keyboard"] == [[{"text": "我的卡券", "callback_data": "CMD_VOUCHERS"}]]
    assert outbound("notice:delivered:4242:telegram").state == "sent"


def test_a_level_up_notice_goes_through_the_notification_outbox_once(rt, telegram: FakeTelegramAPI,  # noqa: ANN001
                                                                      run_jobs) -> None:  # noqa: ANN001
    user = buyer("tg-2")
    identity(user, "telegram", "700002", seen_ago=None)
    notice = Notice(kind="level_up", order_no="", order_id=0, product="", amount_fen=0, when="2026-11-23",
                    page="pages/creator/index", text="恭喜升到二星！")
    with db.connection_context():
        first = send_user_notice("level_up:1:2:telegram", user, notice, TelegramNotifier(rt.sender))
        again = send_user_notice("level_up:1:2:telegram", user, notice, TelegramNotifier(rt.sender))
    run_jobs()
    assert (first, again) == ("sent", "done")
    assert [s.text for s in telegram.sent_to(700002)] == ["恭喜升到二星！"]
    assert notice_key(notice, user, "telegram").startswith(f"notice:level_up:u{user.id}:")


def test_a_paid_order_is_announced_to_the_buyers_telegram(rt, client, login, fake_pay, shop,  # noqa: ANN001
                                                          telegram: FakeTelegramAPI, run_jobs,  # noqa: ANN001
                                                          monkeypatch) -> None:  # noqa: ANN001
    # given delivery notices on the Telegram channel, and a buyer whose Telegram account is linked
    monkeypatch.setattr(rt, "notifiers", build_notifiers(["telegram"], rt.wechat,
                                                         rt.settings.WECHAT_SUBSCRIBE_TEMPLATE_ID, sender=rt.sender))
    sku = shop.card_sku(keys=2, price=2990)
    order = api_paid(client, login, fake_pay, sku.code, "tg-buyer")
    identity(buyer("tg-buyer"), "telegram", "700003", seen_ago=dt.timedelta(hours=1))
    # when the worker runs: delivery, then the sender's drain
    run_jobs()
    # then the order is delivered and its notice reached the buyer's private chat once
    with db.connection_context():
        assert Order.get_by_id(order["id"]).status == "delivered"
        note = Notification.get(Notification.order_id == order["id"])
    assert note.channel == "telegram" and note.state == "sent"
    (sent,) = telegram.sent_to(700003)
    assert order["no"] in sent.text and "¥29.90" in sent.text
    assert "KEY" not in sent.text and "SECRET" not in sent.text  # the card key stays in the vault
    row = outbound(f"notice:delivered:{order['id']}:telegram")
    assert row.state == "sent" and row.chat_id == "700003"


# ---- WeChat official account -----------------------------------------------------------------


def test_inside_the_window_a_customer_service_message_goes_out_at_once(rt, fake_wechat: FakeWeChatAPI) -> None:  # noqa: ANN001
    user = buyer("mp-open-1")
    identity(user, "wechat", "oa-open-1", seen_ago=dt.timedelta(hours=47))
    with db.connection_context():
        oa_notifier(rt).send(user, order_notice(5001, "QXWIN0001"))
        oa_notifier(rt).send(user, order_notice(5001, "QXWIN0001"))  # a retried notification
    (message,) = customs(fake_wechat, "oa-open-1")
    assert message["msgtype"] == "text" and "QXWIN0001" in message["text"]["content"]
    assert "1. 我的卡券" in message["text"]["content"]  # the button as a numbered menu
    assert subscribes(fake_wechat, user.openid) == []
    assert outbound("notice:delivered:5001:wechat_oa").state == "sent"


def test_outside_the_window_the_subscribe_message_is_the_fallback(rt, fake_wechat: FakeWeChatAPI) -> None:  # noqa: ANN001
    user = buyer("mp-closed-1")
    identity(user, "wechat", "oa-closed-1", seen_ago=dt.timedelta(hours=49))
    with db.connection_context():
        oa_notifier(rt).send(user, order_notice(5002, "QXOUT0001"))
    assert customs(fake_wechat, "oa-closed-1") == []
    (message,) = subscribes(fake_wechat, "mp-closed-1")
    assert message["data"]["character_string1"]["value"] == "QXOUT0001"
    with db.connection_context():
        assert OutboundMessage.select().count() == 0


def test_without_an_official_account_identity_the_subscribe_message_is_used(rt, fake_wechat: FakeWeChatAPI) -> None:  # noqa: ANN001
    user = buyer("mp-only-1")
    with db.connection_context():
        oa_notifier(rt).send(user, order_notice(5003, "QXMP0001"))
    assert len(subscribes(fake_wechat, "mp-only-1")) == 1


def test_a_closed_window_at_wechat_falls_back_to_the_subscribe_message(rt, fake_wechat: FakeWeChatAPI) -> None:  # noqa: ANN001
    # given a user seen an hour ago by our records, but WeChat answers 45015 (window closed)
    user = buyer("mp-45015")
    identity(user, "wechat", "oa-45015", seen_ago=dt.timedelta(hours=1))
    fake_wechat.fail_next(1, errcode=45015, endpoint="custom")
    with db.connection_context():
        oa_notifier(rt).send(user, order_notice(5004, "QX45015"))
    # then the customer-service message is failed for good, and the subscribe message went out
    row = outbound("notice:delivered:5004:wechat_oa")
    assert row.state == "failed" and "45015" in row.last_error
    with db.connection_context():
        assert [a.status for a in OutboundAttempt.select()] == ["errcode 45015"]
    assert len(subscribes(fake_wechat, "mp-45015")) == 1


def test_a_transient_wechat_error_is_retried_by_the_sender_not_the_fallback(rt, fake_wechat: FakeWeChatAPI,  # noqa: ANN001
                                                                            run_jobs) -> None:  # noqa: ANN001
    user = buyer("mp-busy")
    identity(user, "wechat", "oa-busy", seen_ago=dt.timedelta(minutes=5))
    fake_wechat.fail_next(1, errcode=-1, endpoint="custom")  # "system error"
    with db.connection_context():
        oa_notifier(rt).send(user, order_notice(5005, "QXBUSY01"))
    # then nothing went out yet, no fallback, and the sender's retry is scheduled
    assert customs(fake_wechat, "oa-busy") == [] and subscribes(fake_wechat, "mp-busy") == []
    assert outbound("notice:delivered:5005:wechat_oa").state == "pending"
    time.sleep(1.1)  # SEND_RETRY_INTERVALS starts at 1 s
    run_jobs()
    assert len(customs(fake_wechat, "oa-busy")) == 1
    assert outbound("notice:delivered:5005:wechat_oa").state == "sent"
