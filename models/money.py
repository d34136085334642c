"""How an amount of money is written for people: one formatter, the only place the rule lives.

Amounts are integer fen everywhere (1 yuan = 100 fen); they become text only at the edges
(chat replies, posters, scripts, CSV, the command line), always through these functions.

Rule: sign, whole yuan, a dot and exactly two digits of fen, computed from integers (no
floats, so no rounding): 0 -> "0.00", 5 -> "0.05", 1990 -> "19.90", -150 -> "-1.50". The sign
goes in front of everything, the currency mark included: `rmb(-150)` is "-¥1.50".
`bots.commands.parsing.parse_yuan` reads what `yuan` writes back to the same fen.
"""

from __future__ import annotations


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals, exactly: -1234 -> '-12.34'."""
    fen = int(fen)
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


def rmb(fen: int) -> str:
    """The same with the yuan mark, for people: 1990 -> '¥19.90', -150 -> '-¥1.50'."""
    text = yuan(fen)
    return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"
