"""Delivery notifiers: the one interface every channel plugs into (models.notifications.Notifier).

Now: the mini-program subscribe message through wechatpy. Telegram and the WeChat official
account plug in beside it in the bots issue.
"""

from __future__ import annotations

import logging

import requests
from wechatpy.exceptions import WeChatClientException

from models.notifications import Notice, NotifyError
from models.users import User
from qianxing.gateways.wechat import MiniProgramClient

log = logging.getLogger(__name__)

# errcodes that retrying cannot fix: the user refused or never subscribed, bad template.
_PERMANENT = {43101, 40003, 40037, 47003}


class MiniProgramSubscribeNotifier:
    channel = "wxa_subscribe"

    def __init__(self, client: MiniProgramClient, template_id: str) -> None:
        self.client, self.template_id = client, template_id

    def send(self, user: User, notice: Notice) -> None:
        if not notice.about_order:
            # The configured template is the delivery notice; other notices need a template
            # of their own, which this channel does not have yet: a permanent failure.
            raise NotifyError(f"no subscribe template for {notice.kind} notices", transient=False)
        data = {
            "character_string1": {"value": notice.order_no},
            "thing2": {"value": notice.product[:20]},
            "amount3": {"value": f"{notice.amount_fen / 100:.2f}"},
            "time4": {"value": notice.when},
            "thing5": {"value": "已发货，点击查看卡密"},
        }
        try:
            self.client.wxa.send_subscribe_message(user.openid, self.template_id, data,
                                                   page=notice.page)
        except WeChatClientException as exc:
            code = exc.errcode
            raise NotifyError(f"subscribe message failed: errcode {code}",
                              transient=code not in _PERMANENT) from None
        except requests.RequestException as exc:
            raise NotifyError(f"subscribe message failed: {type(exc).__name__}") from None


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


def build_notifiers(channels: list[str], client: MiniProgramClient, template_id: str) -> list:
    made = {"log": LogNotifier, "wxa_subscribe": lambda: MiniProgramSubscribeNotifier(client, template_id)}
    return [made[c]() for c in channels]
