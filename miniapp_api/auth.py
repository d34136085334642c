"""Session tokens for the mini-program: signed, expiring, carrying only the user id."""

from __future__ import annotations

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from models.errors import DomainError
from models.users import User


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="miniapp-session")


def issue_token(user: User) -> str:
    return _serializer().dumps({"uid": user.id, "oid": user.openid})


def current_user() -> User:
    """The user behind the Bearer token. Raises Unauthorized."""
    if "user" in g:
        return g.user
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("log in first (Authorization: Bearer <token>)")
    try:
        data = _serializer().loads(token, max_age=current_app.config["SESSION_TTL_SECONDS"])
    except SignatureExpired:
        raise Unauthorized("your session has expired; log in again") from None
    except BadSignature:
        raise Unauthorized("invalid session token") from None
    # The token is signed by us, so its claims are trusted without a database round trip.
    if not (isinstance(data, dict) and isinstance(data.get("uid"), int)
            and isinstance(data.get("oid"), str)):
        raise Unauthorized("invalid session token")
    user = User(id=data["uid"], openid=data["oid"])
    g.user = user
    return user
