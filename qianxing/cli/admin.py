"""`qianxing admin ...`: operator accounts of the web admin (/admin).

The first operator is created here (`admin create-operator NAME --role owner`); later ones may be
created here or on the admin's Operators page. Each command is an audit row (operator "cli").
"""

from __future__ import annotations

import sys

import click

from models.operators import Role
from qianxing.cli.boot import boot

_CLI = (None, "cli", "owner")


def _audit(action: str, op_id: int, reason: str = "") -> None:
    from models import audit

    audit.record(operator_id=_CLI[0], operator_name=_CLI[1], role=_CLI[2], action=action,
                 object=f"operator:{op_id}", reason=reason, ip="cli")


def _fail(exc: Exception) -> click.ClickException:
    from models.errors import DomainError

    if isinstance(exc, DomainError):
        return click.ClickException(exc.message)
    raise exc


@click.group()
def admin() -> None:
    """Operators of the web admin: create, disable, enable, reset password or two-factor, list."""


@admin.command("create-operator")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]),
              help="owner, finance, support, ops or readonly")
@click.option("--password-stdin", is_flag=True,
              help="read the password from stdin instead of printing a one-time password")
def create_operator(name: str, role: str, password_stdin: bool) -> None:
    """Create an operator. Without --password-stdin a one-time password is printed, which must be
    changed at the first login; owner and finance enrol two-factor (TOTP) at their first login."""
    boot()
    from models import operators
    from models.db import connection, db

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with connection():
        try:
            with db.atomic():
                op, secret = operators.create_operator(name, role, password)
                _audit("operator.create", op.id, f"role {role}")
        except Exception as exc:  # noqa: BLE001 - domain errors become clean messages
            raise _fail(exc) from None
        if password_stdin:
            op.must_change_password = False
            op.save(only=[operators.Operator.must_change_password])
    click.echo(f"operator {op.name} ({op.role}) created")
    if not password_stdin:
        click.echo(f"one-time password: {secret}")
        click.echo("it must be changed at the first login")
    if op.needs_totp:
        click.echo("two-factor (TOTP) is enrolled with a QR code at the first login")


def _set(name: str, what: str, reason: str) -> str | None:
    boot()
    from models import operators
    from models.db import connection, db

    with connection():
        try:
            with db.atomic():
                op = operators.by_name(name)
                shown = None
                if what in ("disable", "enable"):
                    operators.set_active(op, what == "enable")
                elif what == "reset-totp":
                    operators.reset_totp(op)
                else:
                    import secrets

                    shown = secrets.token_urlsafe(12)
                    operators.set_password(op, shown, one_time=True)
                _audit(f"operator.{what.replace('-', '_')}", op.id, reason)
        except Exception as exc:  # noqa: BLE001
            raise _fail(exc) from None
    return shown


@admin.command("disable")
@click.argument("name")
@click.option("--reason", default="", help="kept in the audit log")
def disable(name: str, reason: str) -> None:
    """Disable an operator: their session ends at their next click."""
    _set(name, "disable", reason)
    click.echo(f"operator {name} disabled")


@admin.command("enable")
@click.argument("name")
@click.option("--reason", default="")
def enable(name: str, reason: str) -> None:
    """Enable a disabled operator again."""
    _set(name, "enable", reason)
    click.echo(f"operator {name} enabled")


@admin.command("reset-password")
@click.argument("name")
@click.option("--reason", default="")
def reset_password(name: str, reason: str) -> None:
    """Print a new one-time password for an operator (e.g. the owner who lost theirs)."""
    shown = _set(name, "reset-password", reason)
    click.echo(f"one-time password for {name}: {shown}")


@admin.command("reset-totp")
@click.argument("name")
@click.option("--reason", default="")
def reset_totp(name: str, reason: str) -> None:
    """Forget an operator's two-factor secret: they enrol again at the next login."""
    _set(name, "reset-totp", reason)
    click.echo(f"two-factor of {name} reset: enrolment at the next login")


@admin.command("list")
def list_operators() -> None:
    """Operators: id, name, role, active, two-factor."""
    boot()
    from models.db import connection
    from models.operators import Operator

    with connection():
        rows = list(Operator.select().order_by(Operator.id))
    for op in rows:
        click.echo(f"{op.id} {op.name} {op.role} {'active' if op.active else 'disabled'} "
                   f"{'totp' if op.totp_secret else '-'}")
    if not rows:
        click.echo("no operators: qianxing admin create-operator NAME --role owner")
