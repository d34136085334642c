"""Who is signed in to the admin and what they may do.

- The operator is read from the signed session cookie once per request (`current()`), with an
  idle timeout (ADMIN_IDLE_TIMEOUT_S) and a check that the account is still active and still has
  the role it signed in with (a disabled or demoted operator is out at their next click).
- `require(permission)` guards a plain view; `Guarded` is the mixin for every Flask-Admin view:
  `permission` to see it at all, and `can_*` flags read from the role at request time.
- Everything that is not allowed answers 403 and changes nothing; not signed in redirects to the
  login page (HTML) — never a 500.
- Personal data shown in the admin goes through `mask_*`, which only `personal.unmasked` roles
  see in full. Card keys are never shown at all.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, g, redirect, request, session, url_for

from models.operators import Operator, allowed

SESSION_KEY = "qx_operator"


@dataclass(frozen=True)
class Signed:
    """The signed-in operator as this request sees them."""

    id: int
    name: str
    role: str
    totp_ok: bool  # the second factor is done (or not needed for this role)

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def sign_in(op: Operator, *, totp_ok: bool) -> None:
    session.clear()  # a new session id's worth of data: nothing from before the login survives
    session[SESSION_KEY] = {"id": op.id, "role": op.role, "totp": totp_ok, "seen": int(time.time())}
    session.permanent = False


def sign_out() -> None:
    session.pop(SESSION_KEY, None)
    session.clear()


def pending() -> dict[str, Any] | None:
    """The half-finished login (password done, second factor not yet), if any."""
    data = session.get(SESSION_KEY)
    return data if data and not data.get("totp") else None


def current() -> Signed | None:
    """The fully signed-in operator of this request, or None. Refreshes the idle clock."""
    if "qx_signed" in g:
        return g.qx_signed
    g.qx_signed = None
    data = session.get(SESSION_KEY)
    if not data or not data.get("totp"):
        return None
    from miniapp_api.deps import runtime

    idle = runtime().settings.ADMIN_IDLE_TIMEOUT_S
    now = int(time.time())
    if now - int(data.get("seen", 0)) > idle:
        g.qx_timed_out = data.get("id")
        sign_out()
        return None
    op = Operator.get_or_none(Operator.id == data["id"])
    if op is None or not op.active or op.role != data.get("role"):
        sign_out()
        return None
    if now - int(data["seen"]) >= 30:  # rewrite the cookie at most twice a minute
        data["seen"] = now
        session.modified = True
    g.qx_signed = Signed(op.id, op.name, op.role, True)
    return g.qx_signed


def login_redirect() -> Any:
    return redirect(url_for("admin_auth.login", next=request.full_path if request.method == "GET" else None))


def require(permission: str) -> Callable:
    """Decorator for admin views: signed in (else the login page) and holding `permission`
    (else 403)."""
    allowed("owner", permission)  # fail at import time on a misspelt permission

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            who = current()
            if who is None:
                return login_redirect()
            if not who.can(permission):
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def must(permission: str) -> Signed:
    """Inside a view: the operator, who must hold `permission` (else 403)."""
    who = current()
    if who is None:
        abort(401)
    if not who.can(permission):
        abort(403)
    return who


class Guarded:
    """Mixin for Flask-Admin views (BaseView and ModelView): `permission` to open the view;
    ModelViews also set `create_permission` / `edit_permission` / `delete_permission` (None:
    never, whatever the role)."""

    permission: str = "dashboard.view"
    create_permission: str | None = None
    edit_permission: str | None = None
    delete_permission: str | None = None
    export_permission: str | None = None

    def is_accessible(self) -> bool:
        who = current()
        return who is not None and who.can(self.permission)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if current() is None:
            return login_redirect()
        abort(403)

    def is_visible(self) -> bool:
        return self.is_accessible()

    # Flask-Admin reads these as attributes; the role decides per request.
    def _role_can(self, permission: str | None) -> bool:
        who = current()
        return bool(permission) and who is not None and who.can(permission)  # type: ignore[arg-type]

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self._role_can(self.create_permission)

    @can_create.setter
    def can_create(self, value: bool) -> None:  # Flask-Admin assigns defaults in __init__
        pass

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self._role_can(self.edit_permission)

    @can_edit.setter
    def can_edit(self, value: bool) -> None:
        pass

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self._role_can(self.delete_permission)

    @can_delete.setter
    def can_delete(self, value: bool) -> None:
        pass

    @property
    def can_export(self) -> bool:  # type: ignore[override]
        return self._role_can(self.export_permission)

    @can_export.setter
    def can_export(self, value: bool) -> None:
        pass


# Masking ---------------------------------------------------------------------------------------

def unmasked() -> bool:
    who = current()
    return who is not None and who.can("personal.unmasked")


def mask(value: str | None, keep_start: int = 3, keep_end: int = 2) -> str:
    """`oABC…yz` style: enough to match by eye, not enough to use."""
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        return value[:1] + "…"
    return f"{value[:keep_start]}…{value[-keep_end:] if keep_end else ''}"


def personal(value: str | None, keep_start: int = 3, keep_end: int = 2) -> str:
    """Personal data (openids, accounts, IPs) as this operator may see it."""
    return (value or "") if unmasked() else mask(value, keep_start, keep_end)
