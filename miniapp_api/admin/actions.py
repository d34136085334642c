"""Running an operator action: once, with a reason, audited, through the domain service.

Every action form carries a one-time `action_token` (`{{ action_token() }}` in a template renders
the hidden input). `perform` claims the token in Redis (SET NX: two tabs posting at once, only
one runs) and writes the audit row with the token as its unique `request_key` (durable: a POST
retried days later finds the row and does nothing). A domain error releases the token, so the
operator can correct the form and submit again.

    outcome = perform("order.refund", f"order:{order.id}", reason=form_reason(),
                      run=lambda: refund(...), before=snapshot)
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import flash, request
from flask_babel import gettext as _
from markupsafe import Markup

from miniapp_api.admin.security import client_ip, current
from miniapp_api.deps import runtime
from models import audit
from models.db import db
from models.errors import DomainError, Forbidden, InvalidInput

log = logging.getLogger(__name__)
TOKEN_FIELD = "action_token"  # noqa: S105 - a form field name
_CLAIM_PREFIX = "qianxing:admin:action"
_CLAIM_TTL_S = 24 * 3600


def new_token() -> str:
    return secrets.token_urlsafe(18)


def token_input() -> Markup:
    """The hidden one-time token field for an action form (a Jinja global)."""
    return Markup(f'<input type="hidden" name="{TOKEN_FIELD}" value="{new_token()}">')  # noqa: S704 - no user input


def flash_duplicate() -> None:
    """Tell the operator a form they sent again was not acted on twice (Outcome.duplicate)."""
    flash(_("这个操作已经提交过了，没有重复执行"), "warning")


def form_reason(field: str = "reason", *, required: bool = True) -> str:
    reason = " ".join((request.form.get(field) or "").split())[:500]
    if required and len(reason) < 2:
        raise InvalidInput("请填写原因（至少 2 个字）", code="reason_required")
    return reason


@dataclass(frozen=True)
class Outcome:
    duplicate: bool  # the token was used before: nothing was done now
    result: Any = None


def _claim(token: str) -> bool | None:
    """True: claimed; False: someone else holds it; None: Redis unreachable (the audit row's
    unique key still stops a replay)."""
    try:
        return bool(runtime().redis.set(f"{_CLAIM_PREFIX}:{token}", "1", nx=True, ex=_CLAIM_TTL_S))
    except redis.RedisError as exc:
        log.warning("admin action claim: Redis unavailable (%s); relying on the audit key", exc)
        return None


def _release(token: str) -> None:
    try:
        runtime().redis.delete(f"{_CLAIM_PREFIX}:{token}")
    except redis.RedisError:
        pass


def perform(action: str, obj: str, *, run: Callable[[], Any], reason: str = "", before: Any = None,
            after: Callable[[Any], Any] | None = None, permission: str | None = None,
            atomic: bool = True, token: str | None = None) -> Outcome:
    """Run `run()` once for this form's token and audit it. `atomic`: the action and its audit row
    commit together (use False when `run` calls an outside service such as WeChat Pay and manages
    its own transactions). `after(result)` gives the after-state for the audit row."""
    who = current()
    if who is None:
        raise Forbidden("not signed in")
    if permission is not None and not who.can(permission):
        raise Forbidden("没有权限执行此操作")
    token = token or request.form.get(TOKEN_FIELD) or ""
    if not 16 <= len(token) <= 64:
        raise InvalidInput("表单缺少一次性令牌，请刷新页面后重试", code="missing_action_token")
    if audit.already_done(token) is not None or _claim(token) is False:
        return Outcome(duplicate=True)
    ip = client_ip()

    def write(result: Any) -> None:
        audit.record(operator_id=who.id, operator_name=who.name, role=who.role, action=action,
                     object=obj, before=before, after=after(result) if after else None, reason=reason,
                     ip=ip, request_key=token)

    try:
        if atomic:
            with db.atomic():
                result = run()
                write(result)
        else:
            result = run()
            with db.atomic():
                write(result)
    except Exception:  # a domain error or a crash: nothing was done, the form may be sent again
        _release(token)
        raise
    return Outcome(duplicate=False, result=result)

def perform_flashed(action: str, obj: str, success: str, *, reason_required: bool = True, **kwargs: Any) -> None:
    """`perform` with the form's reason, and tell the operator how it went: the domain error
    (a missing reason included), a form sent again (`flash_duplicate`), or `success`."""
    try:
        outcome = perform(action, obj, reason=form_reason(required=reason_required), **kwargs)
    except DomainError as exc:
        flash(exc.message, "error")
        return
    if outcome.duplicate:
        flash_duplicate()
    else:
        flash(success, "success")



def record(action: str, obj: str = "", *, reason: str = "", before: Any = None, after: Any = None,
           operator: tuple[int | None, str, str] | None = None) -> None:
    """An audit row for something that is not a form action (logins, exports, views of secrets).
    `operator` = (id, name, role) when nobody is signed in yet (a login)."""
    who = current()
    op_id, name, role = operator if operator else ((who.id, who.name, who.role) if who else (None, "?", ""))
    audit.record(operator_id=op_id, operator_name=name, role=role, action=action, object=obj, before=before,
                 after=after, reason=reason, ip=client_ip())
