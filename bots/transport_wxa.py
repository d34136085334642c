"""The mini-program subscribe-message transport of the outbound sender (platform "wxa"; the
shared base is bots/transports.py).

A subscribe message goes to a mini-program openid (the outbox row's chat id) through the
mini-program's wechatpy client (`client.wxa.send_subscribe_message`), with the template, its
fields and the page stored in the row's payload (`template_id`, `data`, `page`; models/reminders.py
writes them). Each message spends one consent the user gave in the mini-program, so a message
WeChat refuses for good (43101: the user has no consent left or refused; a bad openid,
template or field) is failed, never retried; an expired token is fetched again once.
"""

from __future__ import annotations

from typing import Any

from bots.transport_wechat import ThreadedWeChatTransport
from bots.transports import Outgoing, Result
from models.reminders import WXA

_PERMANENT = {43101: "no subscribe consent left (or refused)", 40003: "invalid openid",
              40037: "invalid template_id", 47003: "template field invalid", 41030: "invalid page"}


class WxaTransport(ThreadedWeChatTransport):
    """Subscribe messages through the mini-program's wechatpy client (sync calls in threads,
    `concurrency` at a time)."""

    platform = WXA
    permanent_errors = _PERMANENT

    def __init__(self, client: Any, *, concurrency: int = 8) -> None:
        super().__init__(client, concurrency=concurrency)

    def send_sync(self, message: Outgoing) -> Result:
        payload = message.payload
        if not payload.get("template_id") or not isinstance(payload.get("data"), dict):
            return Result("permanent", "no template", "a subscribe message needs template_id and data")
        return self._call(lambda: self._send(message.chat_id, payload))

    def _send(self, openid: str, payload: dict[str, Any]) -> None:
        self.client.wxa.send_subscribe_message(openid, payload["template_id"], payload["data"],
                                               page=payload.get("page"))
