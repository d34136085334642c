"""Operator accounts: argon2 passwords, TOTP with replay protection, roles as data."""

from __future__ import annotations

import time

import pyotp
import pytest

from models import operators
from models.errors import Conflict, InvalidInput
from models.operators import ROLE_PERMISSIONS, BadCredentials, Role, allowed


def test_a_password_is_stored_as_an_argon2_hash_and_checked(conn):
    # given an operator created with a password
    op, password = operators.create_operator("alice", "support", "a-long-password")
    # then the hash is argon2id, not the password
    assert op.password_hash.startswith("$argon2id$") and "a-long-password" not in op.password_hash
    # and the right password signs in, a wrong one or a wrong name does not (same error)
    assert operators.authenticate("alice", password).id == op.id
    for name, pw in (("alice", "wrong-password!"), ("nobody", "a-long-password")):
        with pytest.raises(BadCredentials) as caught:
            operators.authenticate(name, pw)
        assert caught.value.code == "bad_credentials"


def test_a_generated_password_is_one_time_and_a_disabled_operator_cannot_sign_in(conn):
    op, password = operators.create_operator("bob", "ops")
    assert op.must_change_password and len(password) >= 12
    operators.set_active(op, False)
    with pytest.raises(BadCredentials) as caught:
        operators.authenticate("bob", password)
    assert caught.value.code == "operator_disabled"


def test_bad_names_roles_passwords_and_duplicates_are_refused(conn):
    operators.create_operator("carol", "finance", "a-long-password")
    for args, error in ((("carol", "finance", "a-long-password"), Conflict),
                        (("dave", "king", "a-long-password"), InvalidInput),
                        (("dave", "ops", "short"), InvalidInput),
                        (("d", "ops", "a-long-password"), InvalidInput),
                        (("da ve<script>", "ops", "a-long-password"), InvalidInput)):
        with pytest.raises(error):
            operators.create_operator(*args)


def test_a_totp_code_is_accepted_once(conn):
    # given a finance operator enrolled with a secret
    secret = pyotp.random_base32()
    op, _ = operators.create_operator("erin", "finance", "a-long-password", totp_secret=secret)
    code = pyotp.TOTP(secret).now()
    # when the code is used, then it cannot be used again (replay)
    operators.verify_totp(op, code)
    with pytest.raises(BadCredentials):
        operators.verify_totp(operators.get_operator(op.id), code)
    # and a wrong code is refused
    with pytest.raises(BadCredentials):
        operators.verify_totp(op, "000000" if code != "000000" else "111111")


def test_enrolment_stores_the_secret_only_after_a_matching_code(conn):
    op, _ = operators.create_operator("frank", "owner", "a-long-password")
    secret = operators.new_totp_secret()
    with pytest.raises(BadCredentials):
        operators.confirm_enrolment(op, secret, "12345x")
    assert operators.get_operator(op.id).totp_secret is None
    operators.confirm_enrolment(op, secret, pyotp.TOTP(secret).at(time.time()))
    assert operators.totp_secret_of(operators.get_operator(op.id)) == secret


def test_the_role_table():
    # the owner holds every permission; each other role holds only its own
    assert all(allowed("owner", p) for p in operators.ALL_PERMISSIONS)
    assert allowed("finance", "orders.refund") and not allowed("support", "orders.refund")
    assert allowed("support", "orders.redeliver") and not allowed("readonly", "orders.redeliver")
    assert allowed("ops", "catalog.edit") and not allowed("finance", "catalog.edit")
    assert not any(allowed(r.value, p) for r in Role if r is not Role.OWNER for p in operators.OWNER_ONLY)
    assert not allowed("readonly", "withdrawals.approve") and not allowed("nobody", "orders.view")
    assert all(p.endswith((".view", ".view_all")) for p in ROLE_PERMISSIONS[Role.READONLY])
    with pytest.raises(ValueError):
        allowed("owner", "orders.refnud")  # a misspelt permission is a bug, not a denial


def test_a_totp_secret_is_stored_sealed_and_survives_a_key_rotation(conn, settings):
    from models import vault
    from qianxing.settings import parse_voucher_keys

    # given an enrolled operator
    secret = pyotp.random_base32()
    op, _ = operators.create_operator("gina", "owner", "a-long-password", totp_secret=secret)
    stored = operators.get_operator(op.id).totp_secret
    # then the database holds it sealed (never the secret in the clear), bound to the name
    assert secret not in stored and stored.startswith("v1:dev1:")
    assert operators.totp_secret_of(operators.get_operator(op.id)) == secret
    # when the vault key is rotated and the secrets re-sealed
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    try:
        vault.configure({"k9": b"9" * 32, **old}, settings.VOUCHER_HASH_KEY or "")
        assert operators.reseal_totp_secrets() == 1 and operators.reseal_totp_secrets() == 0
        vault.configure({"k9": b"9" * 32}, settings.VOUCHER_HASH_KEY or "")  # the old key dropped
        # then the same code still verifies
        operators.verify_totp(operators.get_operator(op.id), pyotp.TOTP(secret).now())
    finally:
        vault.configure(old, settings.VOUCHER_HASH_KEY or "")
