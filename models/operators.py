"""Operator accounts of the admin: separate from shoppers and creators, roles as data.

TOTP secrets are stored sealed with the vault's cipher (models/vault.py: AES-256-GCM under
VOUCHER_KEY, bound to the operator's name), like card keys; `reseal_totp_secrets` re-encrypts
them under the current key when the key is rotated.

An operator signs in with a name and an argon2-hashed password; the owner and finance roles
also need a TOTP code (RFC 6238, pyotp), enrolled with a QR code on first login. What a role may
do is the table `ROLE_PERMISSIONS`: the admin asks `allowed(role, permission)` before every view
and action, so a role's reach is read in one place and tested as a whole.
"""

from __future__ import annotations

import base64
import secrets
import time
from enum import StrEnum

import peewee as pw
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from models.db import BaseModel, utcnow
from models.errors import Conflict, DomainError, InvalidInput, NotFound


class Role(StrEnum):
    OWNER = "owner"  # everything: operators, key rotation
    FINANCE = "finance"  # refunds, mark paid, withdrawals, ledger, exports
    SUPPORT = "support"  # orders: view, redeliver, resend notices, hold; vouchers masked
    OPS = "ops"  # catalog, vault import, live sessions, group rules, broadcasts, coupons and group-buy
    READONLY = "readonly"  # dashboards and lists


TOTP_ROLES = frozenset({Role.OWNER, Role.FINANCE})

_VIEW_ALL = {"dashboard.view", "orders.view", "creators.view", "catalog.view", "vault.view",
             "withdrawals.view", "ledger.view", "chat.view", "activity.view", "jobs.view", "live.view",
             "promo.view", "risk.view", "content.view"}
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.FINANCE: frozenset(_VIEW_ALL | {
        "orders.refund", "orders.mark_paid", "orders.fraud", "orders.hold", "orders.retry_settlement",
        "withdrawals.approve", "withdrawals.reject", "ledger.verify",
        "exports.orders", "exports.ledger", "exports.withdrawals", "personal.unmasked", "audit.view",
        "dashboard.refresh", "promo.refund_retry", "risk.decide"}),
    Role.SUPPORT: frozenset({"dashboard.view", "orders.view", "creators.view", "catalog.view",
                             "orders.redeliver", "orders.resend", "orders.hold", "chat.view",
                             "exports.orders", "content.handoff"}),  # masked: no personal.unmasked
    Role.OPS: frozenset(_VIEW_ALL | {
        "catalog.edit", "vault.import", "live.manage", "chat.edit", "chat.broadcast", "chat.retry",
        "activity.import", "jobs.retry", "dashboard.refresh", "promo.manage",
        # issue 16: FAQ, word lists, hot topics, talk tracks; review of creators' scripts; hand-offs
        "content.manage", "content.review", "content.handoff"}),
    Role.READONLY: frozenset(_VIEW_ALL),
}
# The owner may do everything, including what only the owner may do.
OWNER_ONLY = frozenset({"operators.manage", "vault.rotate", "creators.manage", "audit.view_all", "risk.rules"})
ALL_PERMISSIONS = frozenset(OWNER_ONLY.union(*ROLE_PERMISSIONS.values()))
ROLE_PERMISSIONS[Role.OWNER] = ALL_PERMISSIONS


def allowed(role: str, permission: str) -> bool:
    """Whether `role` holds `permission`; unknown roles and permissions hold nothing."""
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")  # a typo in a view, not a denial
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}; choose one of {', '.join(r.value for r in Role)}",
                           code="invalid_role") from None


class Operator(BaseModel):
    name = pw.CharField(max_length=64, unique=True)
    role = pw.CharField(max_length=16)
    password_hash = pw.CharField(max_length=255)
    # set once enrolment is confirmed: sealed with the vault's key (AES-GCM, bound to the name),
    # never stored in the clear; `totp_secret_of(op)` opens it
    totp_secret = pw.CharField(max_length=255, null=True)
    totp_last_step = pw.BigIntegerField(default=0)  # a code is accepted once (no replay)
    active = pw.BooleanField(default=True)
    must_change_password = pw.BooleanField(default=True)  # a one-time password was printed
    created_at = pw.DateTimeField(default=utcnow)
    password_changed_at = pw.DateTimeField(default=utcnow)
    last_login_at = pw.DateTimeField(null=True)

    @property
    def needs_totp(self) -> bool:
        return self.role in TOTP_ROLES


_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 10
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class BadCredentials(DomainError):
    code = "bad_credentials"
    status = 401


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters", code="weak_password")
    if len(password) > 256:
        raise InvalidInput("a password has at most 256 characters", code="weak_password")


def _check_name(name: str) -> str:
    name = name.strip()
    if not 2 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise InvalidInput("an operator name is 2-64 characters of letters, digits and . _ - @",
                           code="invalid_name")
    return name


_SEALED = "v1"


def _aad(name: str) -> bytes:
    return b"totp:" + name.encode()


def seal_secret(name: str, secret: str) -> str:
    """`v1:<key id>:<nonce>:<ciphertext>` (base64) of a TOTP secret."""
    from models.vault import cipher

    sealed = cipher().seal(secret, _aad(name))
    return ":".join((_SEALED, sealed.key_id, base64.b64encode(sealed.nonce).decode(),
                     base64.b64encode(sealed.ciphertext).decode()))


def totp_secret_of(op: Operator) -> str | None:
    """The operator's TOTP secret in the clear (None: not enrolled)."""
    from models.vault import Sealed, cipher

    if not op.totp_secret:
        return None
    version, key_id, nonce, ciphertext = op.totp_secret.split(":")
    if version != _SEALED:
        raise ValueError(f"unknown TOTP secret format {version!r}")
    return cipher().open(Sealed(key_id, base64.b64decode(nonce), base64.b64decode(ciphertext)), _aad(op.name))


def reseal_totp_secrets() -> int:
    """Re-encrypt every TOTP secret not sealed under the vault's current key (after a rotation);
    how many were re-sealed."""
    from models.vault import cipher

    current = cipher().current_id
    done = 0
    for op in Operator.select().where(Operator.totp_secret.is_null(False)):
        if op.totp_secret.split(":")[1] != current:
            Operator.update(totp_secret=seal_secret(op.name, totp_secret_of(op))).where(
                Operator.id == op.id).execute()
            done += 1
    return done


def create_operator(name: str, role: str, password: str | None = None, *,
                    totp_secret: str | None = None) -> tuple[Operator, str]:
    """A new active operator and its password: the given one, or a generated one-time password
    that must be changed at first login. With `totp_secret` the operator is already enrolled
    (tests, benchmarks); otherwise owner and finance enrol at first login."""
    name, role_value = _check_name(name), parse_role(role).value
    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    _check_password(password)
    if Operator.get_or_none(Operator.name == name) is not None:
        raise Conflict(f"operator {name!r} already exists", code="operator_exists")
    op = Operator.create(name=name, role=role_value, password_hash=_hasher.hash(password),
                         totp_secret=seal_secret(name, totp_secret) if totp_secret else None,
                         must_change_password=generated)
    return op, password


def get_operator(operator_id: int) -> Operator:
    op = Operator.get_or_none(Operator.id == operator_id)
    if op is None:
        raise NotFound(f"no operator {operator_id}")
    return op


def by_name(name: str) -> Operator:
    op = Operator.get_or_none(Operator.name == name.strip())
    if op is None:
        raise NotFound(f"no operator {name!r}", code="operator_not_found")
    return op


def authenticate(name: str, password: str) -> Operator:
    """The active operator with this name and password, else BadCredentials (the same error
    whether the name or the password is wrong). Rehashes when argon2's parameters changed."""
    op = Operator.get_or_none(Operator.name == name.strip()[:64])
    if op is None:
        _hasher.hash(password[:256])  # the same work as a real check: names do not leak by timing
        raise BadCredentials("wrong name or password")
    try:
        _hasher.verify(op.password_hash, password[:256])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise BadCredentials("wrong name or password") from None
    if not op.active:
        raise BadCredentials("this operator account is disabled", code="operator_disabled")
    if _hasher.check_needs_rehash(op.password_hash):
        op.password_hash = _hasher.hash(password)
        op.save(only=[Operator.password_hash])
    return op


def change_password(op: Operator, current: str, new: str) -> None:
    try:
        _hasher.verify(op.password_hash, current[:256])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise BadCredentials("the current password is wrong") from None
    if new == current:
        raise InvalidInput("the new password must differ from the current one", code="weak_password")
    set_password(op, new)


def set_password(op: Operator, new: str, *, one_time: bool = False) -> None:
    _check_password(new)
    op.password_hash = _hasher.hash(new)
    op.must_change_password = one_time
    op.password_changed_at = utcnow()
    op.save(only=[Operator.password_hash, Operator.must_change_password, Operator.password_changed_at])


def set_active(op: Operator, active: bool) -> None:
    op.active = active
    op.save(only=[Operator.active])


def set_role(op: Operator, role: str) -> None:
    op.role = parse_role(role).value
    if op.role not in TOTP_ROLES:
        op.totp_secret = None
    op.save(only=[Operator.role, Operator.totp_secret])


# TOTP -------------------------------------------------------------------------------------------

def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(op: Operator, secret: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=op.name, issuer_name=issuer)


def _accept(op: Operator, secret: str, code: str) -> bool:
    """Check a code within one step of drift, refusing any step already used (replay)."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(secret)
    step_now = int(time.time()) // totp.interval
    for step in (step_now, step_now - 1, step_now + 1):
        if step > op.totp_last_step and secrets.compare_digest(totp.at(step * totp.interval), code):
            # Claim the step atomically: two requests with the same code cannot both pass.
            claimed = (Operator.update(totp_last_step=step)
                       .where(Operator.id == op.id, Operator.totp_last_step < step).execute())
            if claimed:
                op.totp_last_step = step
                return True
    return False


def confirm_enrolment(op: Operator, secret: str, code: str) -> None:
    """Store the secret once the operator proved their authenticator shows the same codes."""
    if op.totp_secret:
        raise Conflict("two-factor is already enrolled", code="totp_enrolled")
    if not _accept(op, secret, code):
        raise BadCredentials("the code does not match; check the time on your phone and try again",
                             code="bad_totp")
    op.totp_secret = seal_secret(op.name, secret)
    op.save(only=[Operator.totp_secret])


def verify_totp(op: Operator, code: str) -> None:
    if not op.totp_secret:
        raise InvalidInput("two-factor is not enrolled", code="totp_not_enrolled")
    if not _accept(op, totp_secret_of(op) or "", code):
        raise BadCredentials("wrong or already used code", code="bad_totp")


def reset_totp(op: Operator) -> None:
    op.totp_secret = None
    op.save(only=[Operator.totp_secret])
