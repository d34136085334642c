"""The WeChat official account's request authentication (wechatpy): the server-URL check, the
signature and timestamp of every POST, AES decryption, and XML read without DTDs or entities.

`authenticate` checks the signature first. Plain mode signs only the query (token, timestamp,
nonce), so it is checked before the body is read; AES mode (WECHAT_OA_AES_KEY set) signs the
encrypted body as well (`msg_signature`), so only the outer envelope is parsed (`safe_fields`),
the signature checked, then the body decrypted. A timestamp older or newer than
`STALE_AFTER_S` is refused as a replay. Anything not accepted raises `Refused` with the HTTP
status to answer. What happens to an authenticated message is in bots/wechat_oa.py.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner

STALE_AFTER_S = 300  # a signed request older (or newer) than this is a replay
MAX_XML_BYTES = 64 * 1024  # real messages are a few hundred bytes
_DIGITS = re.compile(r"^\d{1,20}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{40}$")


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


# -- XML without DTDs or entities ------------------------------------------------------
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

