"""Chat identities, who is talking: a platform account (Telegram user id, WeChat official-account
openid, a console name) resolved to a `User`.

A person first seen through a bot has no mini-program openid yet, so the `User` row created for
them carries the placeholder openid `{platform}:{external_id}` (e.g. `telegram:123456`,
`wechat:oXyz...`, `console:ann`). That keeps `user.openid` unique and non-null, and it can never
collide with a real mini-program openid (those contain no colon). An official-account openid is
NOT the mini-program openid of the same person (different appid); linking the two (through the
unionid) is left to a later issue, so such a person has two users until then.

Every inbound message updates the identity's `display_name` and `last_inbound_at` (which opens
WeChat's 48-hour customer-service window). `chat_id` is where private messages to the user go:
the private chat's id when the message came from one, else the account id itself (a Telegram
private chat has the user's id; a WeChat or console chat is the account).
"""

from __future__ import annotations

from typing import Protocol

import peewee as pw

from models.chat import ChatIdentity, Platform
from models.db import db, utcnow
from models.errors import InvalidInput
from models.users import User, get_or_create_by_openid

NAME_MAX = 64


class Account(Protocol):
    """A platform account as an adapter reports it (bots.types.Member)."""

    @property
    def external_id(self) -> str: ...

    @property
    def name(self) -> str: ...


def placeholder_openid(platform: str, external_id: str) -> str:
    return f"{platform}:{external_id}"


def _validate(platform: str, member: Account) -> tuple[str, str]:
    try:
        platform = Platform(platform).value
    except ValueError:
        raise InvalidInput(f"unknown chat platform {platform!r}", code="unknown_platform") from None
    external_id = (member.external_id or "").strip()
    limit = ChatIdentity.external_id.max_length
    if not external_id or len(placeholder_openid(platform, external_id)) > User.openid.max_length \
            or len(external_id) > limit or any(ch.isspace() or not ch.isprintable() for ch in external_id):
        raise InvalidInput("the chat account id is empty, too long or has spaces", code="invalid_account")
    return platform, external_id


def _clean_name(name: str) -> str:
    return "".join(ch for ch in (name or "") if ch.isprintable()).strip()[:NAME_MAX]


def resolve(platform: str, member: Account, chat_id: str, chat_kind: str = "private") -> User:
    """The user behind a platform account, created on first contact (safe when two first
    messages arrive at once: both end with the same identity and user)."""
    platform, external_id = _validate(platform, member)
    name = _clean_name(member.name)
    private_chat = (chat_id if chat_kind == "private" and chat_id else external_id)[:64]
    now = utcnow()
    found = (ChatIdentity.select(ChatIdentity, User).join(User)
             .where((ChatIdentity.platform == platform) & (ChatIdentity.external_id == external_id))
             .first())
    if found is None:
        found = _create(platform, external_id, name, private_chat, now)
    changes: dict = {ChatIdentity.last_inbound_at: now}
    if name and name != found.display_name:
        changes[ChatIdentity.display_name] = name
    if chat_kind == "private" and private_chat != found.chat_id:
        changes[ChatIdentity.chat_id] = private_chat
    ChatIdentity.update(changes).where(ChatIdentity.id == found.id).execute()
    user = found.user
    if name and not user.nickname:
        User.update(nickname=name).where((User.id == user.id) & (User.nickname == "")).execute()
        user.nickname = name
    return user


def _create(platform: str, external_id: str, name: str, chat_id: str, now: object) -> ChatIdentity:
    user = get_or_create_by_openid(placeholder_openid(platform, external_id))
    try:
        with db.atomic():  # a savepoint inside a caller's transaction
            return ChatIdentity.create(platform=platform, external_id=external_id, user=user,
                                       chat_id=chat_id, display_name=name, last_inbound_at=now)
    except pw.IntegrityError:  # a concurrent first message created it
        return (ChatIdentity.select(ChatIdentity, User).join(User)
                .where((ChatIdentity.platform == platform) & (ChatIdentity.external_id == external_id))
                .get())


def identity_of(platform: str, external_id: str) -> ChatIdentity | None:
    return ChatIdentity.get_or_none((ChatIdentity.platform == platform)
                                    & (ChatIdentity.external_id == external_id))
