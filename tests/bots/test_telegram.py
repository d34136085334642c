"""The Telegram adapter: stored updates through aiogram's real Update model and Dispatcher,
against the fake Bot API (button presses are answered there, mentions checked with getMe)."""

from __future__ import annotations

from typing import Any

import pytest

from bots.telegram import BadUpdate, TelegramSession
from bots.types import Incoming, Member
from tests.fakes.telegram_api import FakeTelegramAPI

USER = {"id": 1001, "is_bot": False, "first_name": "小", "last_name": "明", "username": "xiaoming"}
PRIVATE = {"id": 1001, "type": "private", "first_name": "小"}
GROUP = {"id": -100500, "type": "supergroup", "title": "千星福利群"}


def message(text: str | None = None, chat: dict[str, Any] = PRIVATE, update_id: int = 1,
            **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"message_id": 10, "date": 1_700_000_000, "chat": chat, "from": USER, **extra}
    if text is not None:
        msg["text"] = text
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split(" ")[0])}]
    return {"update_id": update_id, "message": msg}


ME = Member("1001", "小 明")


def test_private_text_becomes_free_text(session: TelegramSession) -> None:
    # given a private message / when converted / then plain text from the sender
    assert session.to_incoming(message("  我的券 ")) == Incoming(
        platform="telegram", chat_id="1001", chat_kind="private", sender=ME, text="我的券")


def test_start_with_a_deep_link_payload_carries_the_code(session: TelegramSession) -> None:
    # given t.me/<bot>?start=QX7K2M9P arrives as "/start QX7K2M9P"
    got = session.to_incoming(message("/start QX7K2M9P"))
    # then the payload is the start payload, the text the bare command
    assert got is not None and got.text == "/start" and got.start_payload == "QX7K2M9P"


def test_plain_start_and_other_commands_keep_their_arguments(session: TelegramSession) -> None:
    start = session.to_incoming(message("/start"))
    bind = session.to_incoming(message("/bind   ABCD1234 "))
    assert start is not None and start.text == "/start" and start.start_payload is None
    assert bind is not None and bind.text == "/bind ABCD1234"


def test_group_commands_addressed_to_us_lose_the_mention_others_are_ignored(
        session: TelegramSession, telegram: FakeTelegramAPI) -> None:
    # given the same command addressed to this bot and to another bot in a supergroup
    ours = session.to_incoming(message(f"/team@{telegram.username}", chat=GROUP))
    theirs = session.to_incoming(message("/team@some_other_bot", chat=GROUP))
    # then ours is a group command from the sender, theirs is not for us
    assert ours == Incoming(platform="telegram", chat_id="-100500", chat_kind="group", sender=ME, text="/team")
    assert theirs is None


def test_photo_captions_are_text_and_stickers_are_nothing(session: TelegramSession) -> None:
    captioned = message(caption="这个多少钱", photo=[{"file_id": "f", "file_unique_id": "u", "width": 1,
                                                      "height": 1}])
    sticker = message(sticker={"file_id": "s", "file_unique_id": "s", "type": "regular", "width": 1,
                               "height": 1, "is_animated": False, "is_video": False})
    assert session.to_incoming(captioned).text == "这个多少钱"  # type: ignore[union-attr]
    assert session.to_incoming(sticker) is None


def test_new_members_in_a_group_are_joins_and_bots_are_left_out(session: TelegramSession) -> None:
    # given a service message: two people and a bot joined
    joined = [{"id": 7, "is_bot": False, "first_name": "阿"}, {"id": 8, "is_bot": True, "first_name": "B",
                                                                "username": "b_bot"},
              {"id": 9, "is_bot": False, "first_name": "Li", "last_name": "Lei"}]
    got = session.to_incoming(message(chat=GROUP, new_chat_members=joined))
    # then one Incoming names the two people
    assert got is not None and got.chat_kind == "group" and got.chat_id == "-100500"
    assert got.joined == (Member("7", "阿"), Member("9", "Li Lei")) and got.text == ""
    only_bot = session.to_incoming(message(chat=GROUP, new_chat_members=[joined[1]]))
    assert only_bot is None


def _member_update(old: str, new: str, update_id: int = 5) -> dict[str, Any]:
    who = {"id": 77, "is_bot": False, "first_name": "Wang"}
    return {"update_id": update_id, "chat_member": {
        "chat": GROUP, "from": who, "date": 1_700_000_000,
        "old_chat_member": {"status": old, "user": who}, "new_chat_member": {"status": new, "user": who}}}


def test_chat_member_join_transitions_are_joins_and_leaves_are_not(session: TelegramSession) -> None:
    joined = session.to_incoming(_member_update("left", "member"))
    left = session.to_incoming(_member_update("member", "left"))
    assert joined is not None and joined.joined == (Member("77", "Wang"),) and joined.chat_kind == "group"
    assert left is None


def test_a_button_press_is_answered_and_its_data_handed_on(session: TelegramSession,
                                                           telegram: FakeTelegramAPI) -> None:
    # given a press on a button under a bot message in a private chat
    press = {"update_id": 9, "callback_query": {
        "id": "cbq-1", "from": USER, "chat_instance": "ci", "data": "withdraw:confirm:500",
        "message": {"message_id": 3, "date": 1_700_000_000, "chat": PRIVATE, "text": "确认提现?"}}}
    # when converted
    got = session.to_incoming(press)
    # then the fake saw answerCallbackQuery for it, and the core gets the data as a callback
    assert [a["callback_query_id"] for a in telegram.callback_answers] == ["cbq-1"]
    assert got == Incoming(platform="telegram", chat_id="1001", chat_kind="private", sender=ME,
                           callback="withdraw:confirm:500")


def test_a_press_without_data_is_answered_but_is_nothing(session: TelegramSession,
                                                         telegram: FakeTelegramAPI) -> None:
    press = {"update_id": 9, "callback_query": {"id": "cbq-2", "from": USER, "chat_instance": "ci",
                                                "game_short_name": "g"}}
    assert session.to_incoming(press) is None
    assert len(telegram.callback_answers) == 1


def test_updates_the_core_does_not_answer_are_none(session: TelegramSession) -> None:
    edited = {"update_id": 3, "edited_message": message("x")["message"]}
    channel = message("hello", chat={"id": -1001, "type": "channel", "title": "c"})
    assert session.to_incoming(edited) is None
    assert session.to_incoming(channel) is None
    assert session.to_incoming({"update_id": 4}) is None


@pytest.mark.parametrize("payload", [
    {"update_id": "x"},
    {"update_id": 5, "message": "not an object"},
    {"update_id": 5, "message": {"message_id": 1}},
    {"update_id": 5, "callback_query": {"id": 1}},
])
def test_payloads_aiogram_cannot_read_are_bad_updates(session: TelegramSession, payload: dict) -> None:
    with pytest.raises(BadUpdate):
        session.to_incoming(payload)
