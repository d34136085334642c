"""The WeChat official-account adapter (wechatpy): authenticated messages in, `Incoming` out,
and the answer inside WeChat's 5-second window. The request's signature, timestamp and AES
decryption (`authenticate`, `verify_server_url`, `OAConfig`, `Refused`) are in
bots/wechat_oa_auth.py.

Order of work for a POST (the Flask view in miniapp_api/wechat_webhook.py drives it):

1. `wechat_oa_auth.authenticate`: the signature first, then the timestamp, and only then the
   (decrypted) body.
2. `parse`: the decrypted XML is parsed without entities, its fields checked, then handed to
   `wechatpy.parse_message`.
3. `claim`: an atomic Redis `SET NX EX` on MsgId (events: FromUserName + CreateTime + event)
   so WeChat's retries (after 5 s, 3 tries, sometimes while the first is still running) are
   answered "success" and do nothing.
4. `to_incoming`: text (keywords such as 海报 go to the core as text), menu CLICK keys
   (`MENU`: the core's `CMD_<NAME>` keys) and numbers typed in answer to a numbered button
   menu as callbacks, a parametric-QR subscribe or SCAN as the start payload (invite binding).
5. `run_within`: the core runs in a small thread pool; if it answers within
   WECHAT_REPLY_BUDGET_MS the first text reply is the passive XML reply and the rest go
   through the sender (customer-service API); otherwise "success" goes back at once and all
   replies follow through the sender when the core finishes. A lock decides which of the two
   happens, so nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.parsers.expat import ExpatError

from wechatpy import parse_message
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply

from bots.commands import wechat_menu
from bots.types import Incoming, Member, Reply
from bots.wechat_oa_auth import Refused, safe_fields

if TYPE_CHECKING:
    from bots.wechat_oa_auth import Authenticated, OAConfig

log = logging.getLogger(__name__)

PLATFORM = "wechat"
DEDUPE_TTL_S = 600  # longer than the stale window, so a replay inside it is still a duplicate
MAX_TEXT_BYTES = 2000  # WeChat cuts passive text replies at 2048 bytes
SUCCESS = "success"
_CLAIM_PREFIX = "qianxing:wechat_oa:seen:"
_DIGITS = re.compile(r"^\d{1,20}$")
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")



# The official account's menu, generated from the command registry (bots/commands/registry.py:
# `wechat_menu`): every CLICK key is a command key the core also takes as a button press
# (Incoming.callback), so a menu click and the matching keyword or Telegram button run the same
# command. WeChat allows 3 top buttons with up to 5 entries each.
MENU: dict[str, Any] = wechat_menu()


def menu_keys(menu: Mapping[str, Any] = MENU) -> list[str]:
    return [b["key"] for top in menu["button"] for b in top.get("sub_button", [top]) if b.get("key")]


# -- parsing -------------------------------------------------------------------------------
def parse(xml: str) -> tuple[BaseMessage, dict[str, Any]]:
    """A wechatpy message from a decrypted XML body whose header fields are sane."""
    fields = safe_fields(xml)
    for name in ("ToUserName", "FromUserName", "CreateTime", "MsgType"):
        if not isinstance(fields.get(name), str):
            raise Refused(400, f"missing {name}")
    if not _OPENID.match(fields["FromUserName"]) or not _DIGITS.match(fields["CreateTime"]):
        raise Refused(400, "bad FromUserName or CreateTime")
    if "MsgId" in fields and not (isinstance(fields["MsgId"], str) and _DIGITS.match(fields["MsgId"])):
        raise Refused(400, "bad MsgId")
    if fields["MsgType"].lower() == "event" and not isinstance(fields.get("Event"), str):
        raise Refused(400, "event without Event")
    try:
        message = parse_message(xml)
    except (ExpatError, ValueError, KeyError, AttributeError, TypeError):
        raise Refused(400, "unparseable message") from None
    return message, fields


def update_key(fields: Mapping[str, Any]) -> str:
    """MsgId for messages; for events FromUserName + CreateTime (WeChat's rule) with the event
    and its EventKey, so two different menu clicks in the same second are two updates while a
    retry (identical fields) is the same one."""
    if fields.get("MsgId"):
        return f"msg:{fields['MsgId']}"
    event = str(fields.get("Event") or fields.get("MsgType") or "").lower()[:24]
    key = f"evt:{fields['FromUserName']}:{fields['CreateTime']}:{event}:{fields.get('EventKey') or ''}"
    if len(key) > 64:
        key = "evt:" + hashlib.sha256(key.encode()).hexdigest()[:56]
    return key


def claim(redis: Any, key: str) -> bool:
    """True for the first delivery of `key`: one atomic SET NX EX, so two concurrent
    deliveries cannot both win."""
    return bool(redis.set(_CLAIM_PREFIX + key, b"1", nx=True, ex=DEDUPE_TTL_S))


def release(redis: Any, key: str) -> None:
    """Let a retry process the message again (the first attempt failed before answering)."""
    redis.delete(_CLAIM_PREFIX + key)


def to_incoming(message: BaseMessage, fields: Mapping[str, Any],
                menu_choice: Callable[[str], str | None] | None = None) -> Incoming | None:
    """The core's view of a message, or None for what the core does not handle.

    `menu_choice(text)` gives the button data behind a number typed in answer to the last
    numbered menu the user was sent (bots.transport_wechat.menu_choice)."""
    openid = fields["FromUserName"]
    base = dict(platform=PLATFORM, chat_id=openid, chat_kind="private", sender=Member(openid))
    kind = message.type
    if kind == "text":
        text = _text(fields, "Content", 2000)
        menu_id = _text(fields, "bizmsgmenuid", 128)
        if menu_id:  # a tapped text-menu (weixin://bizmsgmenu) link: its data
            return Incoming(**base, text=text, callback=menu_id)
        choice = menu_choice(text) if menu_choice is not None and text.isdigit() else None
        if choice:
            return Incoming(**base, text=text, callback=choice)
        return Incoming(**base, text=text) if text else None
    if kind == "event":
        event = message.event
        key = _text(fields, "EventKey", 128)
        if event == "click" and key:
            return Incoming(**base, callback=key)
        if event in ("subscribe_scan", "scan") and key:
            return Incoming(**base, start_payload=key.removeprefix("qrscene_"))
        if event == "subscribe":
            return Incoming(**base, start_payload="")  # welcome, no invite
    return None


def _text(fields: Mapping[str, Any], name: str, limit: int) -> str:
    value = fields.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


# -- replies -------------------------------------------------------------------------------
def render(reply: Reply) -> tuple[str, list[str]]:
    """A text-only reply as the customer-service sender renders it (bots.transport_wechat.wechat_text:
    link buttons as <a> links, data buttons as a numbered menu), with the data behind each
    number, so a passive reply and a followed-up one look and answer the same."""
    from bots.sender import payload_of
    from bots.transport_wechat import wechat_text

    numbered: list[str] = []
    text = wechat_text(payload_of(reply, ""), numbered=numbered)  # no image: nothing is written
    return text, numbered


def passive_candidate(replies: Sequence[Reply]) -> Reply | None:
    """The reply that can go back in the HTTP answer: the first one, if it is text only and
    fits a passive text reply (an image or a long text goes through the sender)."""
    if not replies:
        return None
    first = replies[0]
    if first.image is not None or first.image_key or not (first.text or first.link):
        return None
    if len(render(first)[0].encode("utf-8")) > MAX_TEXT_BYTES:
        return None
    return first


def passive_xml(cfg: OAConfig, message: BaseMessage, reply: Reply, auth: Authenticated, redis: Any) -> str:
    """The passive reply XML (encrypted and signed with msg_signature in AES mode). A numbered
    menu in it is remembered for the user like the sender does, so typing "1" presses button 1."""
    from bots.transport_wechat import WX_MENU

    text, numbered = render(reply)
    if numbered:
        redis.set(WX_MENU.format(message.source), json.dumps(numbered), ex=48 * 3600)
    content = text.replace("]]>", "]]]]><![CDATA[>")  # keep the CDATA section whole
    xml = TextReply(message=message, content=content).render()
    if auth.encrypted:
        return cfg.crypto().encrypt_message(xml, auth.nonce, str(int(time.time())))
    return xml


# -- the 5-second window -------------------------------------------------------------------
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wechat-oa")
        return _pool


def drain() -> None:
    """Wait for every handler still running in the pool, abandoned ones included (a test's
    database must not be swapped or emptied under them); the next message starts a new pool."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


@dataclass
class _Race:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False  # the HTTP answer went out as "success"
    passive: Reply | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Outcome:
    passive: Reply | None  # answer this in the HTTP response
    timed_out: bool  # "success" went back; the replies follow through the sender
    failed: bool  # the handler raised before the budget ran out


def run_within(budget_s: float, handle: Callable[[], Sequence[Reply]],
               follow_up: Callable[[Sequence[Reply]], None],
               on_error: Callable[[BaseException], None], after: Callable[[], None]) -> Outcome:
    """Run `handle` in the pool; wait at most `budget_s`.

    In time: the passive candidate is returned and the other replies go to `follow_up` (in
    the pool thread). Too late: `follow_up` gets every reply once the handler finishes.
    Whichever side takes the lock first decides; the other sees its decision."""
    race = _Race()

    def work() -> None:
        try:
            replies = list(handle())
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting request or logged
            with race.lock:
                race.error = exc
                race.done.set()
            on_error(exc)
            after()
            return
        try:
            with race.lock:
                if race.abandoned:
                    rest = replies
                else:
                    race.passive = passive_candidate(replies)
                    rest = replies[1:] if race.passive is not None else replies
                    race.done.set()
            if rest:
                follow_up(rest)
        except Exception:  # noqa: BLE001 - the sender records its own failures
            log.exception("wechat oa: sending follow-up replies failed")
        finally:
            after()

    _executor().submit(work)
    race.done.wait(budget_s)
    with race.lock:
        if race.done.is_set():
            return Outcome(race.passive, False, race.error is not None)
        race.abandoned = True
    return Outcome(None, True, False)
