"""models.identities.resolve: a platform account becomes a user on first contact, once, even when
first messages race; every message refreshes the name and the 48-hour window's clock."""

from __future__ import annotations

import pytest

from bots.types import Member
from models import identities
from models.chat import ChatIdentity
from models.db import db, utcnow
from models.errors import InvalidInput
from models.users import User
from tests.bots.conftest import say, text_of
from tests.concurrently import at_once


def resolve(*args, **kw) -> User:  # noqa: ANN002, ANN003
    with db.connection_context():
        return identities.resolve(*args, **kw)


def ident(platform: str, external_id: str) -> ChatIdentity:
    with db.connection_context():
        return ChatIdentity.get((ChatIdentity.platform == platform) & (ChatIdentity.external_id == external_id))


def test_first_contact_creates_a_user_with_a_placeholder_openid(rt):
    # given a Telegram account never seen before
    before = utcnow()
    # when it sends its first message
    user = resolve("telegram", Member("1001", "Ann Lee"), "1001")
    # then a user exists whose openid is the documented placeholder, named after the account
    assert user.openid == "telegram:1001"
    assert user.nickname == "Ann Lee"
    row = ident("telegram", "1001")
    assert (row.user_id, row.chat_id, row.display_name) == (user.id, "1001", "Ann Lee")
    assert row.last_inbound_at >= before


def test_every_message_updates_name_and_last_inbound(rt):
    # given a known WeChat account
    first = resolve("wechat", Member("oOPENID1", "旧名字"), "oOPENID1")
    seen = ident("wechat", "oOPENID1").last_inbound_at
    # when it writes again under another name
    again = resolve("wechat", Member("oOPENID1", "新名字"), "oOPENID1")
    # then it is the same user, with the new display name and a later last_inbound_at
    assert again.id == first.id
    row = ident("wechat", "oOPENID1")
    assert row.display_name == "新名字"
    assert row.last_inbound_at >= seen
    with db.connection_context():
        assert User.select().count() == 1


def test_first_seen_in_a_group_the_private_chat_is_the_account(rt):
    # when a Telegram user is first seen in a group, then private messages go to the account id
    resolve("telegram", Member("2002", "Ben"), "-100777", "group")
    assert ident("telegram", "2002").chat_id == "2002"
    # and a later private message keeps it
    resolve("telegram", Member("2002", "Ben"), "2002", "private")
    assert ident("telegram", "2002").chat_id == "2002"


def test_same_external_id_on_two_platforms_is_two_users(rt):
    a = resolve("telegram", Member("42", "x"), "42")
    b = resolve("console", Member("42", "x"), "42")
    assert a.id != b.id and {a.openid, b.openid} == {"telegram:42", "console:42"}


def test_concurrent_first_messages_make_one_identity_and_one_user(rt):
    # given eight first messages from the same account arriving at once
    users = at_once(lambda: resolve("telegram", Member("3003", "Racer"), "3003").id, 8)
    # then every one resolved to the same user, stored once
    assert len(users) == 8 and len(set(users)) == 1
    with db.connection_context():
        assert ChatIdentity.select().where(ChatIdentity.external_id == "3003").count() == 1
        assert User.select().where(User.openid == "telegram:3003").count() == 1


@pytest.mark.parametrize("platform, external_id", [
    ("icq", "1"), ("telegram", ""), ("telegram", "   "), ("console", "x" * 60), ("console", "two words"),
])
def test_bad_accounts_are_refused(rt, platform, external_id):
    with pytest.raises(InvalidInput):
        resolve(platform, Member(external_id, "n"), "c")


def test_a_bad_account_gets_a_polite_reply_from_the_core(rt):
    # when an adapter passes an unusable account id, the core answers politely instead of raising
    replies = say("/help", who="x" * 200)
    assert "无法识别你的账号" in text_of(replies)
    replies = say("/help", who="ann", platform="icq")
    assert "暂不支持" in text_of(replies)


def test_names_are_cleaned_and_cut(rt):
    user = resolve("console", Member("nm", "  名字\x00\x07" + "长" * 100 + "  "), "nm")
    row = ident("console", "nm")
    assert "\x00" not in row.display_name and len(row.display_name) <= 64
    assert user.nickname == row.display_name
