"""POST /webhooks/telegram: Telegram's webhook for the bot.

Order of checks: the secret token (header `X-Telegram-Bot-Api-Secret-Token`, compared in
constant time) before the body is read; then the body (a JSON object with an integer
update_id, at most MAX_UPDATE_BYTES); then the update is stored (a duplicate update_id is
answered 200 and ignored) and the 200 goes out only after that commit, so Telegram resends
anything we did not durably keep (models.inbox). Processing happens in the drain job
(tasks.chat_updates.process_updates), signalled after the commit.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from miniapp_api.deps import runtime
from miniapp_api.errors import error_response
from models import inbox
from tasks import queues

log = logging.getLogger(__name__)
bot_webhooks = Blueprint("bot_webhooks", __name__, url_prefix="/webhooks")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
MAX_UPDATE_BYTES = 256 * 1024  # a long message with a quoted reply is well under this
MAX_UPDATE_ID = 2**53


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    update_id = payload.get("update_id")
    if type(update_id) is not int or not 0 <= update_id < MAX_UPDATE_ID:
        return None
    return payload


@bot_webhooks.post("/telegram")
def telegram_webhook() -> Response:
    settings = runtime().settings
    secret = settings.TELEGRAM_WEBHOOK_SECRET
    if not secret or not settings.TELEGRAM_BOT_TOKEN:
        return error_response(404, "not_found", "the Telegram webhook is not enabled")
    # Header values arrive as latin-1 text (WSGI); compare the raw bytes in constant time.
    given = request.headers.get(SECRET_HEADER, "").encode("latin-1", "replace")
    if not hmac.compare_digest(given, secret.encode("utf-8")):
        log.warning("telegram webhook: bad or missing secret token from %s", request.remote_addr)
        return error_response(403, "forbidden", "bad or missing secret token")

    request.max_content_length = MAX_UPDATE_BYTES  # werkzeug answers 413 beyond it
    payload = _parse(request.get_data(cache=False))
    if payload is None:
        return error_response(400, "invalid_update", "the body must be a JSON object with an integer update_id")
    try:
        row_id = inbox.store_telegram_update(payload)
    except ValueError:  # text the database cannot hold (lone surrogates)
        return error_response(400, "invalid_update", "the update contains invalid text")
    if row_id is not None:
        queues.chat_update(row_id)
    return jsonify({"ok": True, "duplicate": row_id is None})
