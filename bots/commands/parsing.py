"""Parsing an update into a `Command`, and amounts typed in yuan.

One command, three spellings, the same behaviour everywhere:
- English slash forms (`/withdraw 100`; Telegram's `/poster@bot` too),
- Chinese keywords for the WeChat official account (`提现 100`, `海报`; a keyword that takes
  arguments may be glued to them: `提现100`; one that takes none must be the whole message, so
  "商品怎么买" stays a question),
- menu-click keys `CMD_<NAME>` (`CMD_POSTER`), which the WeChat adapter passes as a callback.

Button presses come back as `Incoming.callback`: `CMD_<NAME>`, `wd:ok:<token>` /
`wd:no:<token>` (withdrawal confirmation), `promo:<SKU>` and `<command>:<arguments>` for any
command that takes arguments (the live session card's `reserve:<id>`). The tables come from the
registry (bots/commands/registry.py).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from bots.commands.i18n import _
from bots.commands.registry import COMMANDS, KEYWORDS, KEYWORDS_LONGEST_FIRST, SLASH, Command
from bots.types import Incoming
from models.errors import InvalidInput

TEXT_MAX = 4096  # longer messages are cut before parsing
MAX_YUAN_DIGITS = 9  # up to 999,999,999.99 yuan; anything longer is refused before arithmetic


class ChatInputError(InvalidInput):
    """Refused input whose message is already a polite sentence in the user's language."""


def normalize(text: str) -> str:
    """NFKC (full-width ／１００ -> /100), cut to TEXT_MAX, stripped."""
    return unicodedata.normalize("NFKC", (text or "")[:TEXT_MAX]).strip()


def parse(incoming: Incoming) -> Command | None:
    """The command in an update, or None for free text (and for an empty message)."""
    if incoming.callback is not None:
        return _parse_callback(normalize(incoming.callback))
    text = normalize(incoming.text)
    if not text:
        return None
    if text.startswith("/"):
        word, _sep, rest = text[1:].partition(" ")
        word = word.split("@", 1)[0].lower()
        rest = rest.strip()
        name = SLASH.get(word)
        if name is None:
            return Command("unknown", (word[:32],))
        return Command(name, tuple(rest.split()), rest)
    for kw in KEYWORDS_LONGEST_FIRST:
        if not text.startswith(kw):
            continue
        name = KEYWORDS[kw]
        rest = text[len(kw):]
        if not rest:
            return Command(name)
        takes_args = COMMANDS[name][2]
        if takes_args and (rest[0].isspace() or rest[0].isascii() or rest[0] in "¥￥"):
            rest = rest.strip()
            return Command(name, tuple(rest.split()), rest)
    return None


def _parse_callback(data: str) -> Command:
    if data.startswith("CMD_"):
        name = data[4:].lower()
        return Command(name, via_button=True) if name in COMMANDS else Command("stale_button")
    kind, _sep, arg = data.partition(":")
    if kind == "wd":
        action, _sep, token = arg.partition(":")
        if action in ("ok", "no") and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", token):
            return Command("withdraw_confirm" if action == "ok" else "withdraw_cancel", (token,),
                           via_button=True)
    if kind == "promo" and arg:
        return Command("promo", (arg[:64],), arg[:64], via_button=True)
    if arg and kind in COMMANDS and COMMANDS[kind][2]:  # `<command>:<arguments>` (reserve:12)
        return Command(kind, tuple(arg[:64].split()), arg[:64], via_button=True)
    return Command("stale_button")


def first_word(text: str) -> str | None:
    """The first word of the argument text, or None when there is none (an optional code)."""
    words = text.split()
    return words[0] if words else None


_AMOUNT = re.compile(r"^[¥￥]?\s*(\d+)(?:\.(\d+))?\s*(?:元|块|rmb|cny)?$", re.IGNORECASE)


def parse_yuan(text: str) -> int:
    """'100', '100.5', '¥100.50', '100元' -> fen. Raises InvalidInput (invalid_amount) for
    anything else: negatives, more than two decimals, more than MAX_YUAN_DIGITS digits."""
    m = _AMOUNT.match(normalize(text))
    if m is None:
        raise ChatInputError(_("「{text}」不是有效金额，请输入数字，例如 100 或 99.50").format(text=text[:20]),
                             code="invalid_amount")
    whole, cents = m.group(1), m.group(2) or ""
    if len(whole.lstrip("0")) > MAX_YUAN_DIGITS:
        raise ChatInputError(_("金额太大了，请检查后重新输入"), code="amount_too_large")
    if len(cents) > 2:
        raise ChatInputError(_("金额最多两位小数（分）"), code="invalid_amount")
    try:
        return int(Decimal(f"{whole}.{cents or '0'}") * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits digits only
        raise ChatInputError(_("不是有效金额"), code="invalid_amount") from None
