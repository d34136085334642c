"""Admin tests drive the real HTTP interface: a test client signed in as an operator of a role,
with the CSRF token and one-time action tokens that the pages put in their forms."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pyotp
import pytest

from models.db import db
from models.operators import totp_secret_of
from tests.factories import operator

CSRF = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
ACTION = re.compile(rb'name="action_token" value="([^"]+)"')


class AdminClient:
    """A Flask test client signed in as one operator."""

    def __init__(self, client, op, password: str) -> None:  # noqa: ANN001
        self.client, self.op, self.password = client, op, password

    def csrf(self, page: str = "/admin/login") -> str:
        body = self.client.get(page).data
        found = CSRF.search(body)
        assert found, f"no csrf token on {page}"
        return (found.group(1) or found.group(2)).decode()

    def login(self) -> AdminClient:
        answer = self.client.post("/admin/login", data={"name": self.op.name, "password": self.password,
                                                         "csrf_token": self.csrf()})
        assert answer.status_code == 302, answer.data[:500]
        if answer.headers["Location"].endswith("/admin/totp"):
            totp = pyotp.TOTP(totp_secret_of(self.op))
            code = totp.now()
            if int(time.time()) // 30 <= (self.op.totp_last_step or 0):  # that step was used: wait
                time.sleep(30 - time.time() % 30 + 0.1)
                code = totp.now()
            answer = self.client.post("/admin/totp", data={"code": code, "csrf_token": self.csrf("/admin/totp")})
            assert answer.status_code == 302, answer.data[:500]
        return self

    def get(self, url: str, **kw):  # noqa: ANN003, ANN201
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict | None = None, *, page: str | None = None, action: bool = True,
             **kw):  # noqa: ANN003, ANN201
        """POST a form as the page would: with the session's CSRF token and, for actions, a fresh
        one-time action token read from `page` (default: the admin home)."""
        data = dict(data or {})
        body = self.client.get(page or "/admin/").data
        data.setdefault("csrf_token", (CSRF.search(body).group(1) or CSRF.search(body).group(2)).decode())
        if action and "action_token" not in data:
            found = ACTION.search(body)
            data["action_token"] = found.group(1).decode() if found else "t" * 24 + str(time.time_ns())
        return self.client.post(url, data=data, **kw)


@pytest.fixture
def admin(app, rt) -> Callable[..., AdminClient]:  # noqa: ANN001
    """admin("finance") -> a fresh client signed in as a new finance operator."""

    def make(role: str = "owner", name: str | None = None) -> AdminClient:
        with db.connection_context():
            op, password = operator(role, name)
        return AdminClient(app.test_client(), op, password).login()

    return make
