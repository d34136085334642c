"""Bot texts in message catalogs: every message id used in code has a translation in every
catalog, Chinese stays the default, and a Telegram user's language_code picks the catalog."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import bots
from bots.commands import i18n
from bots.core import handle
from bots.telegram import TelegramSession
from bots.types import Incoming, Member
from qianxing import wiring
from tests.bots.conftest import join, text_of
from tests.factories import earn

BOTS_DIR = Path(bots.__file__).resolve().parent
_FIELD = re.compile(r"\{(\w*)\}")


def used_msgids() -> dict[str, str]:
    """Every `_("...")` / `N_("...")` under bots/, as Babel extracts it: msgid -> first place."""
    found: dict[str, str] = {}
    for name, lineno, msgid, _comments, _context in extract_from_dir(
            str(BOTS_DIR), method_map=[("**.py", "python")], keywords={"_": None, "N_": None}):
        if isinstance(msgid, str):
            found.setdefault(msgid, f"bots/{name}:{lineno}")
    return found


def po_entries(locale: str) -> dict[str, str]:
    with i18n.po_path(locale).open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id and not m.fuzzy}


def test_code_uses_messages():
    assert len(used_msgids()) > 150


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_message_id_has_a_translation(locale):
    entries = po_entries(locale)
    missing = {msgid: where for msgid, where in used_msgids().items() if not entries.get(msgid)}
    assert not missing, f"messages without a {locale} translation in {i18n.po_path(locale)}: {missing}"


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_translations_keep_the_placeholders_and_the_catalog_has_no_stale_entries(locale):
    entries, used = po_entries(locale), used_msgids()
    assert sorted(set(entries) - set(used)) == []  # stale: the code no longer says it
    for msgid, translation in entries.items():
        assert sorted(_FIELD.findall(translation)) == sorted(_FIELD.findall(msgid)), msgid
        assert translation.endswith("\n") == msgid.endswith("\n"), msgid


def test_the_english_catalog_is_english():
    cjk = {msgid: t for msgid, t in po_entries("en").items() if re.search(r"[\u4e00-\u9fff]", t)}
    assert cjk == {}


def test_a_missing_catalog_entry_falls_back_to_chinese_and_is_caught(monkeypatch, tmp_path):
    # given a catalog that lost an entry
    (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
    text = i18n.po_path("en").read_text(encoding="utf-8")
    lost = text.replace('msgstr "Not a valid amount"', 'msgstr ""')
    assert lost != text
    (tmp_path / "en" / "LC_MESSAGES" / "messages.po").write_text(lost, encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.catalog.cache_clear()
    try:
        # then the completeness check names it, and the bot still answers (in Chinese)
        assert not po_entries("en").get("不是有效金额")
        with i18n.use_locale("en"):
            assert i18n.gettext("不是有效金额") == "不是有效金额"
    finally:
        monkeypatch.undo()
        i18n.catalog.cache_clear()


@pytest.mark.parametrize("code, locale", [
    (None, "zh"), ("", "zh"), ("zh", "zh"), ("zh-hans", "zh"), ("zh-Hant", "zh"), ("en", "en"),
    ("en-US", "en"), ("EN_gb", "en"), ("ru", "zh"), ("x" * 100, "zh"),
])
def test_language_codes_pick_a_catalog(code, locale):
    assert i18n.locale_for(code) == locale


# ---- replies in English -----------------------------------------------------------------------

def say_in(locale: str, text: str = "", *, who: str = "ann", callback: str | None = None) -> list[Any]:
    return handle(Incoming("console", who, "private", Member(who, who), text=text, callback=callback,
                           locale=locale), wiring.runtime())


def test_an_english_speaker_gets_english_replies(rt):
    assert "There is no /frobnicate command. Send /help to see the commands." in text_of(say_in("en", "/frobnicate"))
    assert "You are not a Qianxing creator yet" in text_of(say_in("en", "/team"))
    joined = say_in("en", "/join")
    assert "Welcome to the Qianxing plan! Your invite code:" in text_of(joined)
    assert [b.text for row in joined[0].buttons for b in row][:3] == ["Invite poster", "My team", "Level progress"]
    assert text_of(say_in("en", "/help")).startswith("Qianxing bot commands:")
    # domain errors and amounts too
    assert '"lots" is not a valid amount' in text_of(say_in("en", "/withdraw lots"))
    assert "No such product" in text_of(say_in("en", "/promo NOPE"))
    # the same user in Chinese (WeChat, the console, no language_code)
    assert "没有 /frobnicate 这个命令" in text_of(say_in("zh", "/frobnicate"))


def test_an_english_withdrawal_is_offered_and_confirmed_in_english(rt):
    creator = join("bea")
    earn(creator, 50_000)
    offer = say_in("en", "/withdraw 100", who="bea")
    assert "Withdraw ¥100.00 to your WeChat wallet?" in text_of(offer)
    confirm = next(b for row in offer[0].buttons for b in row if b.text == "Confirm withdrawal")
    assert "Withdrawal" in text_of(say_in("en", callback=confirm.data, who="bea"))


def _update(language_code: str | None, text: str = "/help", **extra: Any) -> dict[str, Any]:
    user: dict[str, Any] = {"id": 2002, "is_bot": False, "first_name": "Sam"}
    if language_code is not None:
        user["language_code"] = language_code
    msg = {"message_id": 1, "date": 1_700_000_000, "chat": {"id": 2002, "type": "private"}, "from": user,
           "text": text, "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}
    return {"update_id": 77, "message": msg}


def test_the_telegram_adapter_carries_the_language_code(session: TelegramSession):
    assert session.to_incoming(_update("en-US")).locale == "en"
    assert session.to_incoming(_update("zh-hans")).locale == "zh"
    assert session.to_incoming(_update(None)).locale == "zh"
    press = {"update_id": 78, "callback_query": {
        "id": "q1", "chat_instance": "c", "data": "CMD_HELP",
        "from": {"id": 2002, "is_bot": False, "first_name": "Sam", "language_code": "en"},
        "message": {"message_id": 5, "date": 1_700_000_000, "chat": {"id": 2002, "type": "private"}}}}
    assert session.to_incoming(press).locale == "en"


def test_an_english_telegram_user_gets_english_help_end_to_end(session: TelegramSession, rt):
    incoming = session.to_incoming(_update("en"))
    assert incoming is not None
    assert text_of(handle(incoming, rt)).startswith("Qianxing bot commands:\n/start · /join — join the Qianxing plan")
    chinese = session.to_incoming(_update("zh"))
    assert text_of(handle(chinese, rt)).startswith("千星机器人命令")
