"""The command set of every chat platform, declared once per command in a registry.

To add a command, write one function in the module of its area and declare it with
`@command(...)` (bots/commands/registry.py): slash names, Chinese keywords, scope (private,
creators only), menu places, help line and the parser of its arguments. The parser, the menus, the help text, the WeChat
official account's menu and the Telegram command menu all come from the registry.

    registry.py  Command / Context, the `@command` decorator, menus, help, WeChat and Telegram menus
    parsing.py   text / button press -> Command; amounts in yuan (parse_yuan)
    links.py     deep-link payloads and mini-program paths
    replies.py   running a command, polite errors, money formatting, shared answers
    confirm.py   the Redis confirmation step of withdrawals
    i18n.py      the message catalogs (bots/locales/<lang>/LC_MESSAGES/messages.po)
    joining.py   start, join, bind, poster, team, progress, level
    earnings.py  earnings, statement, withdraw (+ confirm / cancel)
    products.py  products, markup, promo
    content.py   script
    handoff.py   answer (a creator answers a hand-off; handoff_flow.py: grounded answers, hand-offs)
    vouchers.py  vouchers, resend
    help.py      help, unknown commands, stale buttons

No command belongs to groups: bots/groups.py answers group messages (welcome, keyword rules,
moderation) and hands commands typed in a group to `execute`, refusing PRIVATE_ONLY ones.
The area modules are imported here in the order their help lines and menu entries appear.
"""

from __future__ import annotations

import importlib

from bots.commands.confirm import WITHDRAW_CONFIRM_TTL_S
from bots.commands.i18n import DEFAULT_LOCALE, LOCALES, N_, _, current_locale, locale_for, use_locale
from bots.commands.links import (
    PRODUCT_PAGE,
    parse_payload,
    product_path,
    product_payload,
    shop_path,
    shop_payload,
    telegram_link,
)
from bots.commands.parsing import (
    MAX_YUAN_DIGITS,
    TEXT_MAX,
    ChatInputError,
    first_word,
    normalize,
    parse,
    parse_yuan,
)
from bots.commands.registry import (
    COMMANDS,
    HANDLERS,
    KEYWORDS,
    REGISTRY,
    SLASH,
    Command,
    Context,
    Handler,
    MenuPlace,
    Parser,
    Spec,
    command,
    help_text,
    menu,
    menu_key,
    private_only,
    telegram_commands,
    wechat_menu,
)
from bots.commands.replies import (
    LIST_MAX,
    MESSAGES,
    PREFIX,
    VOUCHERS_MAX,
    execute,
    free_text,
    money,
    percent,
    polite,
)
from models.money import yuan

# The areas, in the order of the help text and the menus (the order of declaration).
AREAS = ("joining", "earnings", "products", "live", "live_reserve", "live_stats", "live_talk", "funnel_hint",
         "coupons", "groupbuy", "self_service", "content", "handoff", "vouchers", "help")
for _area in AREAS:
    importlib.import_module(f"bots.commands.{_area}")

# Commands that show money or goods of the sender: answered in a private chat only.
PRIVATE_ONLY = private_only()
# The Chinese (default) menus and help text, as constants.
MAIN_MENU = menu("main")
JOIN_MENU = menu("join")
HELP = help_text()

__all__ = [
    "AREAS", "COMMANDS", "DEFAULT_LOCALE", "HANDLERS", "HELP", "JOIN_MENU", "KEYWORDS", "LIST_MAX", "LOCALES",
    "MAIN_MENU", "MAX_YUAN_DIGITS", "MESSAGES", "N_", "PREFIX", "PRIVATE_ONLY", "PRODUCT_PAGE", "REGISTRY", "SLASH",
    "TEXT_MAX",
    "VOUCHERS_MAX", "WITHDRAW_CONFIRM_TTL_S", "ChatInputError", "Command", "Context", "Handler", "MenuPlace", "Parser",
    "Spec",
    "_", "command", "current_locale", "execute", "first_word", "free_text", "help_text", "locale_for", "menu",
    "menu_key", "money", "normalize", "parse", "parse_payload", "parse_yuan", "percent", "polite",
    "private_only", "product_path", "product_payload", "shop_path", "shop_payload", "telegram_commands",
    "telegram_link", "use_locale", "wechat_menu", "yuan",
]
