"""The operator admin under /admin: Flask-Admin views on the same app and runtime as the API.

`init_admin(app, settings)` wires it: Flask-Babel (zh_CN default, en), Flask-WTF CSRF checked on
every state-changing /admin request, the session cookie's flags, HTML error pages for /admin, the
sign-in blueprint, and the views (one module per area of the business; see docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import Flask, render_template, request
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect

from miniapp_api.admin import actions, i18n
from miniapp_api.admin.security import current

if TYPE_CHECKING:
    from qianxing.settings import Settings

PREFIX = "/admin"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
csrf = CSRFProtect()


def _is_admin_path() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def error_page(status: int, message: str | None = None) -> Any:
    """The HTML answer to an error on an /admin page (the API keeps its JSON errors)."""
    default = {400: _("请求无效"), 401: _("请先登录"), 403: _("没有权限执行此操作"), 404: _("页面不存在"),
               405: _("请求无效"), 413: _("文件太大"), 429: _("尝试次数过多，请稍后再试"),
               503: _("服务暂时不可用，请稍后再试")}
    text = message or default.get(status) or _("服务暂时不可用，请稍后再试")
    return render_template("qx/error.html", status=status, message=text), status


def local_time(moment: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored (naive UTC) time as Asia/Shanghai wall time, the way every admin page shows time."""
    import datetime as dt

    from models.activity import EXPORT_TIMEZONE

    if moment is None:
        return "—"
    if isinstance(moment, dt.datetime):
        return moment.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(EXPORT_TIMEZONE)).strftime(fmt)
    return moment.strftime(fmt)


def _error_page(status: int, message: str) -> Any:
    """Errors on /admin pages as HTML; the message of a domain error is shown as it is, the
    generic HTTP ones in the operator's language."""
    response, _status = error_page(status, None if status in (401, 403, 404, 405, 413, 429) or status >= 500
                                   else message)
    from flask import make_response

    out = make_response(response, status)
    return out


def _views(admin: Admin) -> None:
    """One module per area of the business, each with `register(admin)`, in menu order."""
    from miniapp_api.admin import (
        activity,
        ai_usage,
        catalog,
        categories,
        chat,
        coupons,
        creators,
        drama,
        exports,
        faq,
        groupbuy,
        handoff,
        hot_topics,
        jobs,
        ledger,
        live,
        live_dashboard,
        live_talk,
        moderation,
        orders,
        refunds,
        risk,
        risk_rules,
        scripts,
        system,
        vault,
        withdrawals,
    )

    for area in (orders, refunds, creators, live, live_dashboard, drama, coupons, groupbuy, withdrawals, ledger,
                 catalog, categories, vault, chat, activity, jobs, exports, risk, risk_rules, handoff, live_talk,
                 ai_usage, moderation, faq, scripts, hot_topics,
                 system):
        area.register(admin)


def init_admin(app: Flask, settings: Settings, var_dir: Path) -> None:
    """`var_dir`: where the compiled message catalogs go (the service's var/)."""
    app.config.update(
        SESSION_COOKIE_NAME="qx_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.QIANXING_ENV == "prod",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH=PREFIX,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked below for /admin only: the API has bearer tokens
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session (idle timeout)
        WTF_CSRF_SSL_STRICT=settings.QIANXING_ENV == "prod",
        FLASK_ADMIN_SWATCH="default",
        MAX_FORM_MEMORY_SIZE=settings.ADMIN_UPLOAD_MAX_BYTES,
    )
    i18n.init(app, var_dir)
    csrf.init_app(app)

    @app.before_request
    def _admin_csrf() -> None:
        if request.method in _UNSAFE and _is_admin_path():
            csrf.protect()  # one mechanism for every form, action and bulk action (CSRFError: 400)

    @app.after_request
    def _admin_headers(response: Any) -> Any:
        if _is_admin_path():
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if response.mimetype == "text/html":
                response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        if _is_admin_path():
            return error_page(400, _("表单已过期，请刷新页面后重试"))
        from miniapp_api.errors import error_response

        return error_response(400, "csrf_failed", exc.description)

    from miniapp_api import errors

    errors.HTML_ERRORS[PREFIX] = _error_page
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.globals.update(action_token=actions.token_input, qx_operator=current,
                                 qx_languages=i18n.LANGUAGES)

    from miniapp_api.admin.auth import admin_auth
    from miniapp_api.admin.dashboard import DashboardView

    app.register_blueprint(admin_auth)
    from flask import Blueprint

    app.register_blueprint(Blueprint("qx_admin_assets", __name__, static_folder="static", template_folder="templates",
                                     static_url_path=f"{PREFIX}/assets"))
    admin = Admin(app, name=_l("千星运营后台"), url=PREFIX, index_view=DashboardView(url=PREFIX),
                  theme=Bootstrap4Theme(base_template="qx/master.html", swatch="default"))
    _views(admin)
