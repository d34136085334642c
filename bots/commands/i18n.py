"""Bot texts in gettext message catalogs (as aiogram's i18n does), read with Babel.

The message ids are the Simplified Chinese texts themselves, so Chinese is the default and a
text missing from a catalog still comes out in Chinese. Catalogs live in
`bots/locales/<lang>/LC_MESSAGES/messages.po` (shipped as package data) and are read from the
.po at first use: there is no compiled .mo and no build step. tests/bots/test_i18n.py fails when
a message id used in code (`_("...")` or `N_("...")`, extracted by Babel) lacks a translation.

The current locale is a context variable: the core sets it for one update (`use_locale`), so
handlers call `_()` without passing it around. Telegram users get the catalog of their
`language_code` when there is one; WeChat and console users get Chinese.

    msgid "你还没有卡券。"   ->   zh: the same text; en: "You have no vouchers yet."
    _("订单 {no}：{status}。").format(no=..., status=...)   # format after translating
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from babel.messages.pofile import read_po

DEFAULT_LOCALE = "zh"
LOCALES = ("zh", "en")
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"

_current: contextvars.ContextVar[str] = contextvars.ContextVar("bot_locale", default=DEFAULT_LOCALE)


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def catalog(locale: str) -> dict[str, str]:
    """msgid -> translation of one locale (fuzzy and empty entries left out)."""
    with po_path(locale).open("rb") as f:
        parsed = read_po(f, ignore_obsolete=True)
    return {m.id: m.string for m in parsed if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def locale_for(language_code: str | None) -> str:
    """The catalog for a Telegram `language_code` ('en', 'en-US', 'zh-hans'): its primary
    language when we have it, else the default (Chinese)."""
    primary = (language_code or "").replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else DEFAULT_LOCALE


def current_locale() -> str:
    return _current.get()


@contextmanager
def use_locale(locale: str | None) -> Iterator[str]:
    """Translate into `locale` (unknown or None: the default) inside the block."""
    chosen = locale if locale in LOCALES else DEFAULT_LOCALE
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    """The translation of `message` in the current locale (the message itself if missing)."""
    return catalog(_current.get()).get(message) or message


_ = gettext


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Mark a text for the catalogs without translating it now (labels declared at import);
    translate with `_()` where it is shown."""
    return message
