"""Signing in to the admin over real HTTP: passwords, first-login TOTP enrolment with a QR code,
throttling per account and per IP, idle timeout, CSRF, logout, and every step in the audit log."""

from __future__ import annotations

import re

import pyotp
import pytest

from models import operators
from models.audit import AuditEntry
from models.db import db
from tests.admin.conftest import CSRF, AdminClient
from tests.factories import operator


def csrf_of(client, page: str = "/admin/login") -> str:  # noqa: ANN001
    found = CSRF.search(client.get(page).data)
    return (found.group(1) or found.group(2)).decode()


def audit_actions() -> list[tuple[str, str]]:
    with db.connection_context():
        return [(a.action, a.operator_name) for a in AuditEntry.select().order_by(AuditEntry.id)]


def sign_in(client, name: str, password: str):  # noqa: ANN001, ANN201
    return client.post("/admin/login", data={"name": name, "password": password, "csrf_token": csrf_of(client)})


def test_first_owner_login_enrols_totp_with_a_qr_code(client, rt):
    # given an owner created with a one-time password and no second factor yet
    with db.connection_context():
        op, password = operators.create_operator("boss", "owner")
    # when they sign in with the password
    answer = sign_in(client, "boss", password)
    # then they are sent to enrol two-factor, with a QR code and the key to type by hand
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/admin/enrol")
    page = client.get("/admin/enrol")
    assert b'id="totp-qr"' in page.data and b"data:image/svg+xml;base64," in page.data
    secret = re.search(rb'id="totp-secret">([A-Z2-7]+)<', page.data).group(1).decode()
    # and the admin is not reachable before the second factor
    assert client.get("/admin/").status_code == 302
    # when a wrong code is entered, it is refused and nothing is stored
    wrong = client.post("/admin/enrol", data={"code": "000000", "csrf_token": csrf_of(client, "/admin/enrol")})
    assert wrong.status_code == 401
    # when the authenticator's code is entered
    done = client.post("/admin/enrol", data={"code": pyotp.TOTP(secret).now(),
                                             "csrf_token": csrf_of(client, "/admin/enrol")})
    # then the secret is stored, the one-time password must be replaced first, and it is audited
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/password")
    with db.connection_context():
        assert operators.totp_secret_of(operators.get_operator(op.id)) == secret
    changed = client.post("/admin/password", data={"current": password, "new": "a-brand-new-pass",
                                                   "confirm": "a-brand-new-pass",
                                                   "csrf_token": csrf_of(client, "/admin/password")})
    assert changed.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert [a for a, _ in audit_actions()] == ["auth.totp_failed", "auth.totp_enrolled", "auth.login",
                                               "operator.password_changed"]


def test_an_enrolled_finance_operator_needs_a_fresh_code(client, rt):
    with db.connection_context():
        op, password = operator("finance", "fin")
    assert sign_in(client, "fin", password).headers["Location"].endswith("/admin/totp")
    code = pyotp.TOTP(operators.totp_secret_of(op)).now()
    ok = client.post("/admin/totp", data={"code": code, "csrf_token": csrf_of(client, "/admin/totp")})
    assert ok.status_code == 302 and client.get("/admin/").status_code == 200
    # the same code again, in a second browser, is refused (replay)
    other = client.application.test_client()
    sign_in(other, "fin", password)
    replay = other.post("/admin/totp", data={"code": code, "csrf_token": csrf_of(other, "/admin/totp")})
    assert replay.status_code == 401 and other.get("/admin/").status_code == 302


def test_a_wrong_password_is_refused_and_recorded(client, rt):
    with db.connection_context():
        operator("support", "sue")
    answer = sign_in(client, "sue", "not-the-password")
    assert answer.status_code == 401 and "账号或密码错误" in answer.get_data(as_text=True)
    unknown = sign_in(client, "nobody", "whatever-password")
    assert unknown.status_code == 401
    assert audit_actions() == [("auth.login_failed", "sue"), ("auth.login_failed", "nobody")]
    assert client.get("/admin/").status_code == 302


def test_login_is_throttled_per_account(client, rt):
    # given an account attacked with wrong passwords up to its limit
    with db.connection_context():
        _, password = operator("support", "sue")
    limit = rt.settings.ADMIN_LOGIN_RATE_PER_ACCOUNT
    assert [sign_in(client, "sue", "wrong-password").status_code for _ in range(limit)] == [401] * limit
    # when even the right password is tried next, from a fresh browser
    other = client.application.test_client()
    refused = sign_in(other, "sue", password)
    # then it is refused with a clear message, and recorded
    assert refused.status_code == 429 and "尝试次数过多" in refused.get_data(as_text=True)
    assert other.get("/admin/").status_code == 302
    assert audit_actions()[-1] == ("auth.throttled", "sue")


def test_login_is_throttled_per_ip(client, rt, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rt.settings, "ADMIN_LOGIN_RATE_PER_IP", 3)
    codes = [sign_in(client, f"name{i}", "wrong-password").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


def test_idle_timeout_signs_out(admin, rt):
    a = admin("readonly")
    assert a.get("/admin/").status_code == 200
    # when the operator has been idle for longer than the timeout
    with a.client.session_transaction("/admin/") as session:
        data = session["qx_operator"]
        data["seen"] -= rt.settings.ADMIN_IDLE_TIMEOUT_S + 1
        session["qx_operator"] = data
    # then the next click goes to the login page
    answer = a.get("/admin/")
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]


def test_a_disabled_operator_is_out_at_the_next_click(admin):
    a = admin("ops")
    with db.connection_context():
        operators.set_active(operators.get_operator(a.op.id), False)
    assert a.get("/admin/").status_code == 302


def test_state_changing_requests_need_the_csrf_token(admin):
    owner = admin("owner")
    # a POST without the token, or with a forged one, is refused and changes nothing
    for data in ({"name": "mallory", "role": "owner"}, {"name": "mallory", "role": "owner", "csrf_token": "x"}):
        answer = owner.client.post("/admin/operators/create", data=data)
        assert answer.status_code == 400 and "表单已过期" in answer.get_data(as_text=True)
    assert owner.client.post("/admin/logout").status_code == 400
    with db.connection_context():
        assert operators.Operator.get_or_none(operators.Operator.name == "mallory") is None
    assert owner.get("/admin/").status_code == 200  # still signed in: the logout was refused


def test_logout_ends_the_session_and_is_recorded(admin):
    a = admin("readonly", "reader")
    assert a.post("/admin/logout", action=False).status_code == 302
    assert a.get("/admin/").status_code == 302
    assert audit_actions()[-2:] == [("auth.login", "reader"), ("auth.logout", "reader")]


def test_the_session_cookie_is_httponly_and_samesite(client, rt):
    with db.connection_context():
        _, password = operator("readonly", "reader")
    answer = sign_in(client, "reader", password)
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert client.application.config["SESSION_COOKIE_SECURE"] is (rt.settings.QIANXING_ENV == "prod")


def test_next_never_leaves_the_admin(client, rt):
    with db.connection_context():
        _, password = operator("readonly", "reader")
    for target in ("https://evil.example/x", "//evil.example", "/api/v1/ping"):
        answer = client.post("/admin/login", data={"name": "reader", "password": password, "next": target,
                                                   "csrf_token": csrf_of(client)})
        assert answer.headers["Location"] == "/admin/", target
        client.post("/admin/logout", data={"csrf_token": csrf_of(client, "/admin/")})


def test_english_is_available(admin):
    a = admin("readonly")
    assert "退出" in a.get("/admin/").get_data(as_text=True)
    a.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    page = a.get("/admin/").get_data(as_text=True)
    assert "Sign out" in page and "退出" not in page


def test_operators_page_is_owner_only_and_its_actions_are_audited(admin):
    owner, finance = admin("owner"), admin("finance")
    assert finance.get("/admin/operators/").status_code == 403
    denied = finance.post("/admin/operators/create", {"name": "eve", "role": "owner"})
    assert denied.status_code == 403
    made = owner.post("/admin/operators/create", {"name": "newbie", "role": "support"}, page="/admin/operators/")
    assert made.status_code == 200 and b'id="one-time-password"' in made.data
    with db.connection_context():
        newbie = operators.by_name("newbie")
        assert operators.Operator.get_or_none(operators.Operator.name == "eve") is None
    # disabling needs a reason; then it is audited with it
    owner.post(f"/admin/operators/{newbie.id}/disable", {}, page="/admin/operators/")
    assert "请填写原因" in owner.get("/admin/operators/").get_data(as_text=True)  # the flash
    with db.connection_context():
        assert operators.by_name("newbie").active
    owner.post(f"/admin/operators/{newbie.id}/disable", {"reason": "left the team"}, page="/admin/operators/")
    with db.connection_context():
        assert not operators.by_name("newbie").active
        row = AuditEntry.select().where(AuditEntry.action == "operator.disable").get()
    assert row.reason == "left the team" and row.before["active"] is True and row.after["active"] is False
    # the owner cannot lock themselves out
    owner.post(f"/admin/operators/{owner.op.id}/disable", {"reason": "oops"}, page="/admin/operators/")
    with db.connection_context():
        assert operators.get_operator(owner.op.id).active


def test_a_double_submitted_action_acts_once(admin):
    owner = admin("owner")
    with db.connection_context():
        target, _ = operator("support", "twice")
    token = "double-submit-token-0001"
    for _ in range(2):
        owner.post(f"/admin/operators/{target.id}/reset_password", {"reason": "lost it", "action_token": token},
                   page="/admin/operators/")
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action == "operator.reset_password").count() == 1


def test_the_audit_log_cannot_be_edited(admin):
    owner = admin("owner")
    with db.connection_context():
        row = AuditEntry.select().first()
        with pytest.raises(Exception), db.atomic():  # noqa: B017, PT011
            AuditEntry.update(reason="rewritten").where(AuditEntry.id == row.id).execute()
        with pytest.raises(Exception), db.atomic():  # noqa: B017, PT011
            AuditEntry.delete().where(AuditEntry.id == row.id).execute()
    assert owner.get(f"/admin/audit/edit/?id={row.id}").status_code in (302, 403, 404)
    assert owner.get("/admin/audit/new/").status_code in (302, 403, 404)
    assert owner.post(f"/admin/audit/delete/?id={row.id}", {"id": row.id}, action=False).status_code in (302, 403, 404)
    with db.connection_context():
        assert AuditEntry.get_by_id(row.id).reason == row.reason


def test_client_helper_signs_in(admin):
    assert isinstance(admin("support"), AdminClient)
