"""The WeChat official-account transport of the outbound sender (the shared base is
bots/transports.py).

`WeChatTransport`: customer-service messages through the official-account wechatpy client
(`message.send_text`; images through a temporary media upload, its media_id cached in Redis
for 2.5 days, then `message.send_image`). Buttons become text links or a numbered menu
(`wechat_text`; `menu_choice` maps a typed number back to the button's data, `WX_MENU` keeps
the last menu per user).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import requests
from wechatpy.exceptions import WeChatClientException

from bots.transports import SENT, MissingImage, Outgoing, Parts, Result, image_path, short_error, text_of

if TYPE_CHECKING:
    from redis import Redis

WECHAT_TEXT_LIMIT = 2000  # bytes-ish; WeChat cuts long customer-service texts
WX_MEDIA_ID = "qianxing:wx:media:{}"  # image key -> temporary media_id (valid 3 days)
WX_MEDIA_TTL_S = 60 * 60 * 60  # 2.5 days
WX_MENU = "qianxing:wx:menu:{}"  # openid -> the last numbered menu sent to it

_PERMANENT_WX = {45015: "outside the 48-hour window", 43004: "user unsubscribed", 40003: "invalid openid",
                 45047: "customer-service quota for this user used up", 43019: "user blocked the account"}
_TOKEN_WX = {40001, 40014, 42001}


def wechat_text(payload: dict[str, Any], *, numbered: list[str] | None = None) -> str:
    """Text, link and buttons as one customer-service text: URL buttons become `<a>` links,
    data buttons a numbered menu (the data of each number is appended to `numbered`)."""
    lines = [text_of(payload)] if text_of(payload) else []
    menu: list[str] = []
    for row in payload.get("buttons") or ():
        for b in row:
            if b.get("url"):
                lines.append(f'<a href="{b["url"]}">{b["text"]}</a>')
            else:
                menu.append(b["text"])
                if numbered is not None:
                    numbered.append(b.get("data") or b["text"])
    if menu:
        lines.append("")
        lines += [f"{i}. {label}" for i, label in enumerate(menu, 1)]
        lines.append("回复数字选择")
    return "\n".join(lines)[:WECHAT_TEXT_LIMIT]


def menu_choice(redis: Redis, openid: str, text: str) -> str | None:
    """The button data behind a number the user typed in answer to the last numbered menu we
    sent them on WeChat (None when it is not a choice)."""
    text = text.strip()
    if not text.isdigit():
        return None
    raw = redis.get(WX_MENU.format(openid))
    if not raw:
        return None
    options = json.loads(raw)
    index = int(text) - 1
    return options[index] if 0 <= index < len(options) else None


class ThreadedWeChatTransport:
    """The shared part of the wechatpy transports (`WeChatTransport`, bots/transport_wxa.py):
    sync calls run in threads, `concurrency` at a time; an invalid or expired token is fetched
    again once; WeChat and network errors become Results (`permanent_errors`: the errcodes never
    retried). A subclass implements `send_sync`."""

    platform: str
    permanent_errors: dict[int, str] = {}

    def __init__(self, client: Any, *, concurrency: int) -> None:
        self.client, self.concurrency = client, concurrency
        self._slots: asyncio.Semaphore | None = None

    async def __aenter__(self) -> Self:
        self._slots = asyncio.Semaphore(self.concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Outgoing) -> Result:
        assert self._slots is not None, "use the transport as an async context manager"
        async with self._slots:
            return await asyncio.to_thread(self.send_sync, message)

    def send_sync(self, message: Outgoing) -> Result:
        raise NotImplementedError

    def _call(self, call: Callable[[], Any]) -> Result:
        """`call` (with one token refresh), its WeChat and network errors as a Result."""
        try:
            self._with_token_refresh(call)
        except WeChatClientException as exc:
            code = exc.errcode
            if code in self.permanent_errors:
                return Result("permanent", f"errcode {code}", f"errcode {code}: {self.permanent_errors[code]}")
            return Result("transient", f"errcode {code}", f"errcode {code}: {exc.errmsg}"[:200])
        except requests.Timeout as exc:
            return Result("transient", "timeout", short_error(exc))
        except requests.RequestException as exc:
            return Result("transient", "network", short_error(exc))
        return SENT

    def _with_token_refresh(self, call: Callable[[], Any]) -> Any:
        """40001/40014/42001 (token invalid or expired): fetch a new token once and try again."""
        try:
            return call()
        except WeChatClientException as exc:
            if exc.errcode not in _TOKEN_WX:
                raise
            self.client.fetch_access_token()
            return call()


class WeChatTransport(ThreadedWeChatTransport):
    """Customer-service messages through the official account's wechatpy client (sync calls
    run in threads, `concurrency` at a time)."""

    platform = "wechat"
    permanent_errors = _PERMANENT_WX

    def __init__(self, client: Any, *, redis: Redis | None, poster_dir: str | Path, concurrency: int = 4) -> None:
        super().__init__(client, concurrency=concurrency)
        self.redis, self.poster_dir = redis, poster_dir

    def send_sync(self, message: Outgoing) -> Result:
        try:
            return self._call(lambda: self._send(message))
        except MissingImage as exc:
            return Result("permanent", "no image", str(exc))

    def _send(self, message: Outgoing) -> None:
        payload, openid = message.payload, message.chat_id
        numbered: list[str] = []
        text = wechat_text(payload, numbered=numbered)
        parts = Parts(self.redis if payload.get("image_key") and text else None, message.id)
        if payload.get("image_key") and "image" not in parts.done:
            self.client.message.send_image(openid, self._media_id(payload["image_key"]))
            parts.mark("image")
        if text:
            self.client.message.send_text(openid, text)
            if numbered and self.redis is not None:
                self.redis.set(WX_MENU.format(openid), json.dumps(numbered), ex=48 * 3600)

    def _media_id(self, key: str) -> str:
        cache_key = WX_MEDIA_ID.format(key)
        cached = self.redis.get(cache_key) if self.redis is not None else None
        if cached:
            return cached.decode() if isinstance(cached, bytes) else cached
        path = image_path(self.poster_dir, key)
        if not path.exists():
            raise MissingImage(f"image {key} is not under POSTER_DIR")
        with path.open("rb") as fh:
            media_id = self.client.media.upload("image", fh)["media_id"]
        if self.redis is not None:
            self.redis.set(cache_key, media_id, ex=WX_MEDIA_TTL_S)
        return media_id
