"""The WeChat official account's server URL: GET /webhooks/wechat (server-URL check) and
POST /webhooks/wechat (messages and events, plain or AES-encrypted).

The signature is checked before anything else is read; the rest of the work (parsing,
dedupe, the 5-second window) is in bots/wechat_oa.py, the signature check itself in
bots/wechat_oa_auth.py. Answers are plain text ("success" or the echostr) or the passive reply
XML; refusals are short plain-text bodies with a 4xx status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, request
from werkzeug.exceptions import HTTPException

from bots import wechat_oa, wechat_oa_auth
from bots.types import Incoming, Member, Reply
from miniapp_api.deps import runtime
from models import identities, inbox
from models.db import connection, db

if TYPE_CHECKING:
    from qianxing.wiring import Runtime

log = logging.getLogger(__name__)
wechat_webhook = Blueprint("wechat_webhook", __name__)

# Events that are a user's own action (they open the 48-hour customer-service window).
_USER_EVENTS = {"subscribe", "subscribe_scan", "scan", "click", "view", "location", "location_select",
                "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin"}


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@wechat_webhook.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _text((exc.name or "error").lower(), exc.code or 500)


@wechat_webhook.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("wechat webhook: unhandled error")
    return _text("internal error", 500)


def _config() -> wechat_oa_auth.OAConfig:
    cfg = wechat_oa_auth.OAConfig.from_settings(runtime().settings)
    if cfg is None:
        abort(404)  # no official account configured
    return cfg


def _refused(refusal: wechat_oa_auth.Refused) -> Response:
    log.warning("wechat webhook: refused (%s) from %s", refusal.reason, request.remote_addr)
    return _text(refusal.reason, refusal.status)


def _read_upto(limit: int) -> bytes:
    stream, chunks, size = request.stream, [], 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@wechat_webhook.get("/webhooks/wechat")
def server_url_check() -> Response:
    cfg = _config()
    try:
        return _text(wechat_oa_auth.verify_server_url(cfg, request.args))
    except wechat_oa_auth.Refused as refusal:
        return _refused(refusal)


@wechat_webhook.post("/webhooks/wechat")
def receive() -> Response:
    cfg = _config()
    try:
        auth = wechat_oa_auth.authenticate(cfg, request.args, _read_upto)
        message, fields = wechat_oa.parse(auth.xml)
    except wechat_oa_auth.Refused as refusal:
        return _refused(refusal)
    rt = runtime()
    key = wechat_oa.update_key(fields)
    if not wechat_oa.claim(rt.redis, key):
        return _text(wechat_oa.SUCCESS)  # a retry of a message already taken
    openid = fields["FromUserName"]
    incoming = wechat_oa.to_incoming(message, fields, lambda text: _menu_choice(rt.redis, openid, text))
    if incoming is None:
        if message.type != "event" or getattr(message, "event", "") in _USER_EVENTS:
            try:
                _touch(openid)
            except Exception:
                wechat_oa.release(rt.redis, key)  # a retry may record it
                raise
        return _text(wechat_oa.SUCCESS)
    with connection():  # answered later by tasks.wechat_updates.recover_stale if we die now
        inbox.store_wechat_message(key, incoming.as_payload())
    errors: list[BaseException] = []
    outcome = wechat_oa.run_within(
        cfg.budget_ms / 1000,
        handle=lambda: _handle(incoming, rt),
        follow_up=lambda replies: _follow_up(rt, key, openid, replies),
        on_error=lambda exc: (errors.append(exc), _failed(rt.redis, key, exc)),
        after=lambda: _answered(key, ok=not errors),
    )
    if outcome.failed:
        return _text("handler failed; retry", 500)
    if outcome.passive is None:
        return _text(wechat_oa.SUCCESS)
    xml = wechat_oa.passive_xml(cfg, message, outcome.passive, auth, rt.redis)
    return Response(xml, mimetype="application/xml")


def _handle(incoming: Incoming, rt: Runtime) -> Sequence[Reply]:
    """Runs on the budget's thread: the app's runtime is passed in (no app context there)."""
    from bots import core

    return core.handle(incoming, rt)


def _follow_up(rt: Runtime, key: str, openid: str, replies: Sequence[Reply]) -> None:
    with db.connection_context():
        rt.sender.send_replies(key, wechat_oa.PLATFORM, openid, list(replies))


def _menu_choice(redis: object, openid: str, text: str) -> str | None:
    from bots.transport_wechat import menu_choice

    return menu_choice(redis, openid, text)  # type: ignore[arg-type]


def _failed(redis: object, key: str, exc: BaseException) -> None:
    log.error("wechat webhook: the handler failed for %s: %r", key, exc)
    wechat_oa.release(redis, key)  # WeChat's retry may process it again


def _touch(openid: str) -> None:
    """A user action the core does not answer still opens the 48-hour window."""
    with db.connection_context():
        identities.resolve(wechat_oa.PLATFORM, Member(openid), openid)


def _answered(key: str, *, ok: bool) -> None:
    """The handler finished and its replies were handed over: mark the stored message
    answered (a failed one stays queued for WeChat's retry or the recovery job), then close
    the thread's connection."""
    try:
        if ok:
            with connection():
                inbox.mark_wechat_done(key)
    except Exception:  # noqa: BLE001 - the recovery job answers it again at worst
        log.exception("wechat webhook: could not mark %s answered", key)
    finally:
        _close_db()


def _close_db() -> None:
    if not db.is_closed():
        db.close()
