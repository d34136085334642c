"""Delivery notifiers: the one interface every channel plugs into (models.notifications.Notifier).

Channels (NOTIFY_CHANNELS): `wxa_subscribe` (the mini-program subscribe message through
wechatpy), `log`, and the chat channels, which hand the notice to the outbound sender
(bots/sender.py) under an idempotency key named after the notice, so a retried notice is
never a second message:

- `telegram`: a private message to the user's Telegram chat (their ChatIdentity), with a
  "my vouchers" button; the card key itself is never in a notice.
- `wechat_oa`: a customer-service message from the official account while the user's 48-hour
  window is open (ChatIdentity.last_inbound_at), sent at once; outside the window, without an
  official-account identity, or when WeChat refuses it (45015 window closed, unsubscribed),
  the mini-program subscribe message instead. So `wechat_oa` takes the place of
  `wxa_subscribe` in NOTIFY_CHANNELS rather than standing beside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import peewee as pw
import requests
from wechatpy.exceptions import WeChatClientException

from bots.types import Button, Reply
from models.chat import ChatIdentity, Platform
from models.db import utcnow
from models.level_evaluation import LEVEL_UP
from models.money import rmb, yuan
from models.notifications import Notice, Notifier, NotifyError
from models.users import User

if TYPE_CHECKING:
    from bots.sender import Sender

log = logging.getLogger(__name__)

# errcodes that retrying cannot fix: the user refused or never subscribed, bad template.
_PERMANENT = {43101, 40003, 40037, 47003}


class MiniProgramSubscribeNotifier:
    """The mini-program subscribe message. Each kind of notice needs a template of its own
    (chosen in the mini-program's admin console, and subscribed to by the user in the app): the
    delivery template for order notices, the level-up template for level-ups."""

    channel = "wxa_subscribe"

    def __init__(self, client: Any, template_id: str,
                 levelup_template_id: str | None = None) -> None:
        self.client, self.template_id = client, template_id
        self.levelup_template_id = levelup_template_id

    def send(self, user: User, notice: Notice) -> None:
        template_id, data = self._message(notice)
        try:
            self.client.wxa.send_subscribe_message(user.openid, template_id, data, page=notice.page)
        except WeChatClientException as exc:
            code = exc.errcode
            raise NotifyError(f"subscribe message failed: errcode {code}",
                              transient=code not in _PERMANENT) from None
        except requests.RequestException as exc:
            raise NotifyError(f"subscribe message failed: {type(exc).__name__}") from None

    def _message(self, notice: Notice) -> tuple[str, dict[str, dict[str, str]]]:
        """The template and its fields for a notice (`thing` values hold at most 20 characters).
        Raises a permanent NotifyError for a kind without a configured template."""
        if notice.about_order:
            return self.template_id, {
                "character_string1": {"value": notice.order_no},
                "thing2": {"value": notice.product[:THING_MAX]},
                "amount3": {"value": yuan(notice.amount_fen)},
                "time4": {"value": notice.when},
                "thing5": {"value": "已发货，点击查看卡密"},
            }
        if notice.kind == LEVEL_UP and self.levelup_template_id:
            return self.levelup_template_id, {
                "thing1": {"value": notice.product[:THING_MAX]},
                "thing2": {"value": _fit(notice.text)},
                "time3": {"value": notice.when},
            }
        raise NotifyError(f"no subscribe template for {notice.kind} notices"
                          + (" (set WECHAT_LEVELUP_TEMPLATE_ID)" if notice.kind == LEVEL_UP else ""),
                          transient=False)


THING_MAX = 20  # WeChat refuses a longer `thing` value (errcode 47003)


def _fit(text: str) -> str:
    """Text for a `thing` field: whole if it fits, else cut with an ellipsis."""
    return text if len(text) <= THING_MAX else text[:THING_MAX - 1] + "…"


class LogNotifier:
    """Development channel: writes the notice to the log (never the card key, which a notice
    does not carry)."""

    channel = "log"

    def send(self, user: User, notice: Notice) -> None:
        if not notice.about_order:
            log.info("notice to user %s: %s %s, open %s", user.id, notice.kind, notice.text,
                     notice.page)
            return
        log.info("notice to user %s: order %s %s delivered, open %s", user.id, notice.order_no,
                 notice.product, notice.page)


# ---- chat channels (through the outbound sender) ---------------------------------------------

WECHAT_WINDOW = dt.timedelta(hours=48)  # customer-service messages after the user's last message
WINDOW_MARGIN = dt.timedelta(minutes=10)  # a message sent near the end may arrive a little later


def _identity(user_id: int, platform: str) -> ChatIdentity | None:
    """The user's account on a platform (the most recently active one, if several)."""
    return (ChatIdentity.select()
            .where((ChatIdentity.user == user_id) & (ChatIdentity.platform == platform))
            .order_by(ChatIdentity.last_inbound_at.desc(nulls="LAST"), ChatIdentity.id.desc())
            .first())


def notice_key(notice: Notice, user: User, channel: str) -> str:
    """The sender's idempotency key of a notice: per order and kind, or per user and content."""
    if notice.about_order:
        return f"notice:{notice.kind}:{notice.order_id}:{channel}"
    digest = hashlib.sha256(f"{notice.text}|{notice.when}|{notice.page}".encode()).hexdigest()[:20]
    return f"notice:{notice.kind}:u{user.id}:{digest}:{channel}"


def notice_reply(notice: Notice) -> Reply:
    """A notice as a chat message: what was delivered and how to see it (never the key)."""
    from bots.commands import menu_key

    if not notice.about_order:
        return Reply(text=notice.text or notice.kind)
    text = (f"发货通知：订单 {notice.order_no} 已发货\n商品：{notice.product}\n"
            f"金额：{rmb(notice.amount_fen)}\n时间：{notice.when}\n卡密请在私聊里点「我的卡券」查看。")
    return Reply(text=text, buttons=((Button("我的卡券", menu_key("vouchers")),),))


class TelegramNotifier:
    """A private Telegram message through the sender (a drain job sends it)."""

    channel = "telegram"

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def send(self, user: User, notice: Notice) -> None:
        try:
            identity = _identity(user.id, Platform.TELEGRAM.value)
            if identity is None:
                raise NotifyError("the user has no Telegram account linked", transient=False)
            self.sender.enqueue(notice_key(notice, user, self.channel), Platform.TELEGRAM.value, identity.chat_id,
                              notice_reply(notice))
        except pw.DatabaseError as exc:
            raise NotifyError(f"telegram notice not queued: {type(exc).__name__}") from None


class WeChatOANotifier:
    """Inside the 48-hour window: a customer-service message, sent at once; otherwise (or when
    WeChat refuses it for good) the fallback, the mini-program subscribe message."""

    channel = "wechat_oa"

    def __init__(self, sender: Sender, fallback: Notifier | None) -> None:
        self.sender, self.fallback = sender, fallback

    def send(self, user: User, notice: Notice) -> None:
        try:
            identity = _identity(user.id, Platform.WECHAT.value)
            seen = identity.last_inbound_at if identity is not None else None
            if identity is not None and seen is not None and utcnow() - seen < WECHAT_WINDOW - WINDOW_MARGIN:
                sender, key = self.sender, notice_key(notice, user, self.channel)
                sender.enqueue(key, Platform.WECHAT.value, identity.chat_id, notice_reply(notice), schedule=False)
                sender.send_now(Platform.WECHAT.value, [key])
                state = sender.states([key]).get(key)
                if state != "failed":
                    return  # sent, or pending with the sender's drain scheduled for its retry
                log.info("wechat customer-service notice %s refused; falling back to the subscribe message", key)
        except pw.DatabaseError as exc:
            raise NotifyError(f"wechat notice not queued: {type(exc).__name__}") from None
        if self.fallback is None:
            raise NotifyError("outside the WeChat 48-hour window and no subscribe fallback", transient=False)
        self.fallback.send(user, notice)


def build_notifiers(channels: list[str], client: Any, template_id: str, *, sender: Sender | None = None,
                    levelup_template_id: str | None = None) -> list:
    """The notifiers of these channels. `client` is the mini-program's WeChat client
    (`send_subscribe_message`), `sender` the process's outbound sender (both built by
    `qianxing.wiring.bootstrap`); the chat channels need the sender."""
    def chat_sender() -> Sender:
        if sender is None:
            raise ValueError("the telegram and wechat_oa channels need the sender")
        return sender

    def subscribe() -> MiniProgramSubscribeNotifier:
        return MiniProgramSubscribeNotifier(client, template_id, levelup_template_id)

    made = {
        "log": LogNotifier,
        "wxa_subscribe": subscribe,
        "telegram": lambda: TelegramNotifier(chat_sender()),
        "wechat_oa": lambda: WeChatOANotifier(chat_sender(), subscribe()),
    }
    return [made[c]() for c in channels]
