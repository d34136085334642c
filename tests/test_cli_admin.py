"""`qianxing admin create-operator|disable|enable|reset-password|reset-totp|list`."""

from __future__ import annotations

from models import operators
from models.audit import AuditEntry
from models.db import db


def test_create_an_owner_with_a_one_time_password_then_disable_it(cli):
    # when the first owner is created
    made = cli("admin", "create-operator", "boss", "--role", "owner")
    # then a one-time password is printed, which signs in and must be changed
    assert made.exit_code == 0, made.output
    password = made.output.split("one-time password: ")[1].split()[0]
    with db.connection_context():
        op = operators.authenticate("boss", password)
        assert op.role == "owner" and op.must_change_password and op.totp_secret is None
    assert "two-factor" in made.output
    # when it is disabled, it cannot sign in, and both commands are audit rows
    assert cli("admin", "disable", "boss", "--reason", "left").exit_code == 0
    with db.connection_context():
        assert not operators.by_name("boss").active
        actions = [a.action for a in AuditEntry.select().order_by(AuditEntry.id)]
    assert actions == ["operator.create", "operator.disable"]
    assert "boss owner disabled" in cli("admin", "list").output


def test_password_from_stdin_and_reset(cli):
    made = cli("admin", "create-operator", "sam", "--role", "support", "--password-stdin",
               input="a-long-secret-pass\n")
    assert made.exit_code == 0 and "one-time" not in made.output, made.output
    with db.connection_context():
        assert not operators.authenticate("sam", "a-long-secret-pass").must_change_password
    reset = cli("admin", "reset-password", "sam")
    new = reset.output.split("one-time password for sam: ")[1].split()[0]
    with db.connection_context():
        assert operators.authenticate("sam", new).must_change_password


def test_mistakes_are_clean_errors(cli):
    assert cli("admin", "create-operator", "x y", "--role", "owner").exit_code == 1
    assert "role" in cli("admin", "create-operator", "zed", "--role", "king").output
    short = cli("admin", "create-operator", "zed", "--role", "ops", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 10" in short.output
    assert cli("admin", "disable", "ghost").exit_code == 1
    cli("admin", "create-operator", "zed", "--role", "ops")
    again = cli("admin", "create-operator", "zed", "--role", "ops")
    assert again.exit_code == 1 and "already exists" in again.output
