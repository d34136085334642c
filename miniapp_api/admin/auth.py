"""Signing in and out of the admin: password, TOTP (enrolment with a QR code on first login for
owner and finance), one-time password replacement, language. Every login, failure, throttle and
logout is an audit row."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from urllib.parse import urlsplit

import qrcode
import qrcode.image.svg
from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from miniapp_api import throttle
from miniapp_api.admin import actions, i18n
from miniapp_api.admin.security import SESSION_KEY, current, pending, sign_in, sign_out
from miniapp_api.deps import runtime
from models import operators
from models.db import db, utcnow
from models.errors import DomainError
from models.operators import BadCredentials, Operator

admin_auth = Blueprint("admin_auth", __name__, url_prefix="/admin")

_BY_IP = throttle.Rule("admin-login:ip", lambda ip, **_: ip,
                       lambda s: (s.ADMIN_LOGIN_RATE_PER_IP, s.ADMIN_LOGIN_WINDOW_S))
# Failed attempts (password or code) per account; every attempt per IP.
_BY_ACCOUNT = throttle.Rule("admin-login:account", lambda name, **_: name.lower() or None,
                            lambda s: (s.ADMIN_LOGIN_RATE_PER_ACCOUNT, s.ADMIN_LOGIN_WINDOW_S))


def _safe_next(target: str | None) -> str:
    """Only a path inside the admin: never an open redirect."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin") and "\\" not in target:
            return target.rstrip("?")
    return url_for("admin.index")


def _audit_as(op: Operator | None, name: str, action: str, reason: str = "") -> None:
    with db.atomic():
        actions.record(action, f"operator:{op.id}" if op else f"name:{name[:60]}", reason=reason,
                       operator=(op.id, op.name, op.role) if op else (None, name[:64] or "?", ""))


def _values(name: str) -> dict[str, str]:
    return {"ip": (request.remote_addr or "unknown")[:64], "name": name}


def _throttled(name: str) -> int | None:
    """Count this attempt for the IP; the seconds to wait if the IP or the account is over."""
    return throttle.hit([_BY_IP], _values(name)) or throttle.blocked(_BY_ACCOUNT, _values(name))


def _failed(name: str) -> None:
    throttle.hit([_BY_ACCOUNT], _values(name))


@admin_auth.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    if current() is not None and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    status = 200
    name = ""
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()[:64]
        password = request.form.get("password") or ""
        wait = _throttled(name)
        if wait is not None:
            _audit_as(None, name, "auth.throttled", f"retry after {wait} s")
            flash(_("尝试次数过多，请 %(seconds)s 秒后再试", seconds=wait), "error")
            status = 429
        else:
            try:
                op = operators.authenticate(name, password)
            except BadCredentials as exc:
                known = Operator.get_or_none(Operator.name == name)
                _failed(name)
                _audit_as(known, name, "auth.login_failed", exc.code)
                flash(_("该账号已停用") if exc.code == "operator_disabled" else _("账号或密码错误"), "error")
                status = 401
            else:
                target = _safe_next(request.form.get("next"))
                if op.needs_totp:
                    sign_in(op, totp_ok=False)
                    session[SESSION_KEY]["next"] = target
                    return redirect(url_for("admin_auth.totp" if op.totp_secret else "admin_auth.enrol"))
                return _finish(op, target)
    return render_template("qx/login.html", name=name, next=request.args.get("next", "")), status


def _finish(op: Operator, target: str):  # noqa: ANN202
    sign_in(op, totp_ok=True)
    with db.atomic():
        Operator.update(last_login_at=utcnow()).where(Operator.id == op.id).execute()
        actions.record("auth.login", f"operator:{op.id}", operator=(op.id, op.name, op.role))
    if op.must_change_password:
        flash(_("请先修改一次性密码"), "warning")
        return redirect(url_for("admin_auth.password"))
    return redirect(target)


def _pending_operator() -> Operator | None:
    data = pending()
    if data is None:
        return None
    op = Operator.get_or_none(Operator.id == data["id"])
    return op if op is not None and op.active else None


def _code_attempt(op: Operator, check: Callable[[str], None]) -> int | None:
    """One try at a two-factor code (a sign-in or an enrolment): None when `check` accepted the
    posted code; else the status to answer with (429 throttled, 401 wrong or reused), with the
    message flashed and the try audited and counted against the account."""
    wait = _throttled(op.name)
    if wait is not None:
        _audit_as(op, op.name, "auth.throttled", f"retry after {wait} s")
        flash(_("尝试次数过多，请 %(seconds)s 秒后再试", seconds=wait), "error")
        return 429
    try:
        check(request.form.get("code") or "")
    except DomainError as exc:
        _failed(op.name)
        _audit_as(op, op.name, "auth.totp_failed", exc.code)
        flash(_("验证码错误或已使用"), "error")
        return 401
    return None


@admin_auth.route("/totp", methods=["GET", "POST"])
def totp():  # noqa: ANN201
    op = _pending_operator()
    if op is None:
        return redirect(url_for("admin_auth.login"))
    if not op.totp_secret:
        return redirect(url_for("admin_auth.enrol"))
    status = 200
    if request.method == "POST":
        status = _code_attempt(op, lambda code: operators.verify_totp(op, code))
        if status is None:
            return _finish(op, session[SESSION_KEY].get("next") or url_for("admin.index"))
    return render_template("qx/totp.html", operator=op), status


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buf = io.BytesIO()
    image.save(buf)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


@admin_auth.route("/enrol", methods=["GET", "POST"])
def enrol():  # noqa: ANN201
    op = _pending_operator()
    if op is None:
        return redirect(url_for("admin_auth.login"))
    if op.totp_secret:
        return redirect(url_for("admin_auth.totp"))
    data = session[SESSION_KEY]
    secret = data.get("enrol_secret")
    if not secret:
        secret = data["enrol_secret"] = operators.new_totp_secret()
        session.modified = True
    status = 200
    if request.method == "POST":
        status = _code_attempt(op, lambda code: operators.confirm_enrolment(op, secret, code))
        if status is None:
            _audit_as(op, op.name, "auth.totp_enrolled")
            return _finish(op, data.get("next") or url_for("admin.index"))
    uri = operators.provisioning_uri(op, secret, runtime().settings.ADMIN_TOTP_ISSUER)
    return render_template("qx/enrol.html", operator=op, secret=secret, qr=_qr_svg(uri)), status


@admin_auth.route("/logout", methods=["POST"])
def logout():  # noqa: ANN201
    who = current()
    if who is not None:
        with db.atomic():
            actions.record("auth.logout", f"operator:{who.id}")
    sign_out()
    flash(_("已退出"), "info")
    return redirect(url_for("admin_auth.login"))


@admin_auth.route("/password", methods=["GET", "POST"])
def password():  # noqa: ANN201
    who = current()
    if who is None:
        return redirect(url_for("admin_auth.login"))
    status = 200
    if request.method == "POST":
        new, confirm = request.form.get("new") or "", request.form.get("confirm") or ""
        if new != confirm:
            flash(_("两次输入的新密码不一致"), "error")
            status = 400
        else:
            op = Operator.get_by_id(who.id)
            try:
                with db.atomic():
                    operators.change_password(op, request.form.get("current") or "", new)
                    actions.record("operator.password_changed", f"operator:{op.id}")
            except DomainError as exc:
                flash(exc.message, "error")
                status = 400
            else:
                flash(_("密码已修改"), "success")
                return redirect(url_for("admin.index"))
    return render_template("qx/password.html"), status


@admin_auth.route("/lang", methods=["POST"])
def lang():  # noqa: ANN201
    chosen = request.form.get("lang")
    if chosen in i18n.LANGUAGES:
        session[i18n.LANG_KEY] = chosen
    return redirect(_safe_next(request.form.get("next")))
