"""People: shoppers (mini-program openid) and, later, creators and operators."""

from __future__ import annotations

import peewee as pw

from models.db import BaseModel, db, utcnow


class User(BaseModel):
    openid = pw.CharField(max_length=64, unique=True)
    unionid = pw.CharField(max_length=64, null=True)
    nickname = pw.CharField(max_length=64, default="")
    created_at = pw.DateTimeField(default=utcnow)

    @property
    def actor(self) -> str:
        return f"user:{self.id}"


def get_or_create_by_openid(openid: str, unionid: str | None = None) -> User:
    """Find or create the shopper behind a WeChat openid (safe under concurrent first logins)."""
    user = User.get_or_none(User.openid == openid)
    if user:
        return user
    try:
        with db.atomic():
            return User.create(openid=openid, unionid=unionid)
    except pw.IntegrityError:
        return User.get(User.openid == openid)
