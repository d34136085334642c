"""The WeChat official-account adapter (wechatpy): server-URL check, signed and AES-encrypted
messages in, `Incoming` out, and the answer inside WeChat's 5-second window.

Order of work for a POST (the Flask view in miniapp_api/wechat_webhook.py drives it):

1. `authenticate`: the signature first. Plain mode signs only the query (token, timestamp,
   nonce), so it is checked before the body is read; AES mode (WECHAT_OA_AES_KEY set) signs
   the encrypted body as well (`msg_signature`), so only the outer envelope is parsed (without
   DTDs or entities), the signature checked, then the body decrypted. A timestamp older or
   newer than `STALE_AFTER_S` is refused as a replay.
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
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply
from wechatpy.utils import WeChatSigner

from bots.commands import wechat_menu
from bots.types import Incoming, Member, Reply

log = logging.getLogger(__name__)

PLATFORM = "wechat"
STALE_AFTER_S = 300  # a signed request older (or newer) than this is a replay
DEDUPE_TTL_S = 600  # longer than the stale window, so a replay inside it is still a duplicate
MAX_XML_BYTES = 64 * 1024  # real messages are a few hundred bytes
MAX_TEXT_BYTES = 2000  # WeChat cuts passive text replies at 2048 bytes
SUCCESS = "success"
_CLAIM_PREFIX = "qianxing:wechat_oa:seen:"
_DIGITS = re.compile(r"^\d{1,20}$")
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{40}$")


# The official account's menu, generated from the command registry (bots/commands/registry.py:
# `wechat_menu`): every CLICK key is a command key the core also takes as a button press
# (Incoming.callback), so a menu click and the matching keyword or Telegram button run the same
# command. WeChat allows 3 top buttons with up to 5 entries each.
MENU: dict[str, Any] = wechat_menu()


def menu_keys(menu: Mapping[str, Any] = MENU) -> list[str]:
    return [b["key"] for top in menu["button"] for b in top.get("sub_button", [top]) if b.get("key")]


class Refused(Exception):
    """The request is not accepted; `status` is the HTTP answer, `reason` a short log line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class OAConfig:
    appid: str
    token: str
    aes_key: str | None
    budget_ms: int

    @classmethod
    def from_settings(cls, settings: Any) -> OAConfig | None:
        """None when the official account is not configured (no server-URL token)."""
        if not settings.WECHAT_OA_TOKEN:
            return None
        return cls(settings.WECHAT_OA_APPID, settings.WECHAT_OA_TOKEN, settings.WECHAT_OA_AES_KEY,
                   settings.WECHAT_REPLY_BUDGET_MS)

    @property
    def encrypted(self) -> bool:
        return bool(self.aes_key)

    def crypto(self) -> WeChatCrypto:
        assert self.aes_key
        return WeChatCrypto(self.token, self.aes_key, self.appid)


# -- signatures ----------------------------------------------------------------------------
def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def _query(args: Mapping[str, str], *names: str) -> list[str]:
    values = [args.get(name) or "" for name in names]
    if not all(values):
        raise Refused(403, "missing " + "/".join(n for n, v in zip(names, values, strict=True) if not v))
    return values


def _fresh(timestamp: str, now: float | None) -> None:
    if not _DIGITS.match(timestamp):
        raise Refused(403, "bad timestamp")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > STALE_AFTER_S:
        raise Refused(403, "stale timestamp")


def _check_plain(cfg: OAConfig, args: Mapping[str, str]) -> tuple[str, str]:
    signature, timestamp, nonce = _query(args, "signature", "timestamp", "nonce")
    if not (_SIGNATURE.match(signature) and _NONCE.match(nonce)
            and _same(_sign(cfg.token, timestamp, nonce), signature)):
        raise Refused(403, "bad signature")
    return timestamp, nonce


def verify_server_url(cfg: OAConfig, args: Mapping[str, str], now: float | None = None) -> str:
    """The GET check WeChat sends when the server URL is saved: echo `echostr` if the
    signature over (token, timestamp, nonce) holds. An official account sends a plain echostr
    in every mode; a `msg_signature` (encrypted echostr, as in WeChat Work) is decrypted."""
    if cfg.encrypted and args.get("msg_signature"):
        msg_signature, timestamp, nonce, echostr = _query(
            args, "msg_signature", "timestamp", "nonce", "echostr")
        if not (_NONCE.match(nonce) and _same(_sign(cfg.token, timestamp, nonce, echostr), msg_signature)):
            raise Refused(403, "bad msg_signature")
        _fresh(timestamp, now)
        return _check_and_decrypt(cfg, msg_signature, timestamp, nonce, echostr)
    timestamp, _nonce = _check_plain(cfg, args)
    _fresh(timestamp, now)
    (echostr,) = _query(args, "echostr")
    if len(echostr) > 128:
        raise Refused(400, "echostr too long")
    return echostr


def _check_and_decrypt(cfg: OAConfig, signature: str, timestamp: str, nonce: str, encrypt: str,
                       envelope: dict[str, Any] | None = None) -> str:
    """wechatpy's own check and decryption through its public `decrypt_message`: the message
    envelope, or an encrypted echostr wrapped as one (the same signature over token, timestamp,
    nonce and the ciphertext; the same AES decryption and appid check). Callers have checked
    the signature in constant time (`_same`) before this runs."""
    try:
        text = cfg.crypto().decrypt_message(envelope if envelope is not None else {"Encrypt": encrypt},
                                            signature, timestamp, nonce)
    except InvalidSignatureException:
        raise Refused(403, "bad msg_signature") from None
    except InvalidAppIdException:
        raise Refused(403, "message for another appid") from None
    except Exception:  # noqa: BLE001 - bad base64, padding or UTF-8 inside a signed body
        raise Refused(400, "undecryptable body") from None
    return text if isinstance(text, str) else text.decode("utf-8")


@dataclass(frozen=True)
class Authenticated:
    """A request whose signature held: the plaintext message and what the reply needs."""

    xml: str
    timestamp: str
    nonce: str
    encrypted: bool


def authenticate(cfg: OAConfig, args: Mapping[str, str], read_body: Callable[[int], bytes],
                 now: float | None = None) -> Authenticated:
    """Check the signature, then the timestamp, and only then read (and decrypt) the body.

    `read_body(limit)` returns at most `limit` bytes; a longer body is refused (413)."""
    if cfg.encrypted:
        msg_signature, timestamp, nonce = _query(args, "msg_signature", "timestamp", "nonce")
        if not (_SIGNATURE.match(msg_signature) and _NONCE.match(nonce)):
            raise Refused(403, "bad msg_signature")
        envelope = safe_fields(_bounded(read_body))
        encrypt = envelope.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise Refused(403, "no Encrypt field to check msg_signature over")
        if not _same(_sign(cfg.token, timestamp, nonce, encrypt), msg_signature):
            raise Refused(403, "bad msg_signature")
        _fresh(timestamp, now)
        xml = _check_and_decrypt(cfg, msg_signature, timestamp, nonce, encrypt, envelope)
        return Authenticated(xml, timestamp, nonce, True)
    timestamp, nonce = _check_plain(cfg, args)
    _fresh(timestamp, now)
    body = _bounded(read_body)
    try:
        return Authenticated(body.decode("utf-8"), timestamp, nonce, False)
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None


def _bounded(read_body: Callable[[int], bytes]) -> bytes:
    body = read_body(MAX_XML_BYTES + 1)
    if len(body) > MAX_XML_BYTES:
        raise Refused(413, "body too large")
    if not body:
        raise Refused(400, "empty body")
    return body


# -- parsing -------------------------------------------------------------------------------
def safe_fields(xml: bytes | str) -> dict[str, Any]:
    """The children of the <xml> root, parsed without DTDs or entities (billion laughs, XXE).
    Nested elements (menu scan events carry some) are allowed two levels deep."""
    raw = xml.encode("utf-8") if isinstance(xml, str) else xml
    if len(raw) > MAX_XML_BYTES:
        raise Refused(413, "XML too large")
    if b"<!" in raw.replace(b"<![CDATA[", b""):  # DOCTYPE, ENTITY, comments: none in WeChat's XML
        raise Refused(400, "XML with a DTD, entity or comment")
    try:
        doc: Any = xmltodict.parse(raw, disable_entities=True)
    except (ExpatError, ValueError, LookupError, RecursionError):
        raise Refused(400, "malformed XML") from None
    fields = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(fields, dict) or not fields or not _shallow(fields, 2):
        raise Refused(400, "not a WeChat <xml> message")
    return fields


def _shallow(value: Any, depth: int) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, dict) and depth > 0:
        return all(not k.startswith("@") and _shallow(v, depth - 1) for k, v in value.items())
    if isinstance(value, list) and depth > 0:
        return len(value) <= 20 and all(_shallow(v, depth - 1) for v in value)
    return False


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
    numbered menu the user was sent (bots.transports.menu_choice)."""
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
    """A text-only reply as the customer-service sender renders it (bots.transports.wechat_text:
    link buttons as <a> links, data buttons as a numbered menu), with the data behind each
    number, so a passive reply and a followed-up one look and answer the same."""
    from bots.sender import payload_of
    from bots.transports import wechat_text

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
    from bots.transports import WX_MENU

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
