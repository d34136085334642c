"""Helpers for the conversation-core tests: updates go in through `bots.core.handle` exactly as
an adapter sends them, replies come out; money is made by real sales and settlement or by
ledger entries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bots.core import handle
from bots.telegram import TelegramSession
from bots.types import Incoming, Member, Reply
from models import network
from models.db import db
from models.network import Creator
from models.users import User
from qianxing import wiring
from qianxing.settings import Settings
from tests.books import release, settle
from tests.fakes.telegram_api import FakeTelegramAPI


def say(text: str = "", *, who: str = "ann", name: str | None = None, chat: str | None = None,
        platform: str = "console", callback: str | None = None, payload: str | None = None,
        joined: tuple[Member, ...] = ()) -> list[Reply]:
    """One update from `who`: privately, or in group `chat`."""
    kind = "group" if chat else "private"
    sender = Member(who, name if name is not None else who)
    return handle(Incoming(platform, chat or who, kind, sender, text=text, callback=callback,
                           start_payload=payload, joined=joined), wiring.runtime())


def text_of(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


def press(replies: list[Reply], label: str, **kw: object) -> list[Reply]:
    """Press the button whose text contains `label` in the replies."""
    for reply in replies:
        for row in reply.buttons:
            for button in row:
                if label in button.text and button.data:
                    return say(callback=button.data, **kw)  # type: ignore[arg-type]
    raise AssertionError(f"no button {label!r} in {replies}")


def button_data(replies: list[Reply], label: str) -> str:
    for reply in replies:
        for row in reply.buttons:
            for button in row:
                if label in button.text and button.data:
                    return button.data
    raise AssertionError(f"no button {label!r}")


def user_of(who: str, platform: str = "console") -> User:
    with db.connection_context():
        return User.get(User.openid == f"{platform}:{who}")


def creator_of(who: str, platform: str = "console") -> Creator:
    with db.connection_context():
        return Creator.get(Creator.user == user_of(who, platform).id)


def join(who: str, *, rank: int = 0) -> Creator:
    """`who` joins through the chat (/join); optionally given a star level."""
    say("/join", who=who)
    creator = creator_of(who)
    if rank:
        with db.connection_context():
            Creator.update(rank=rank).where(Creator.id == creator.id).execute()
            creator = Creator.get_by_id(creator.id)
    return creator


def settle_and_release(rt) -> None:  # noqa: ANN001
    settle(rt)
    release(rt)


def bind(child: Creator, parent: Creator) -> None:
    with db.connection_context():
        network.bind(child, parent.code, "typed")


@pytest.fixture
def session(settings: Settings, telegram: FakeTelegramAPI) -> Iterator[TelegramSession]:
    """The Telegram adapter on the fake Bot API."""
    with TelegramSession(settings) as s:
        yield s
