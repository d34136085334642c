"""The command registry: every chat command declared once, with the `@command` decorator.

    @command("withdraw", keywords=("提现",), private=True, creator=True, args=withdraw_args,
             menu=(MenuPlace("wechat", 2, 2, N_("提现")),),
             help=N_("/withdraw 金额 · 提现 100 — 提现到微信零钱（需确认）"))
    def cmd_withdraw(ctx: Context, cmd: Command) -> list[Reply]: ...  # ctx.creator, cmd.value

A declaration holds everything the rest of the bot needs: the slash names (the command's own
name unless given), the Chinese keywords, the scope (`private=True`: answered in a private chat
only), where it appears in the menus, its help line (a catalog message id; the part after
" — " is its Telegram menu description), whether only creators may run it and how its
arguments are parsed:
- `creator=True`: a user who is no creator yet is answered "join first" (`join_first()`)
  before anything else; the handler finds the creator in `ctx.creator`.
- `args=<parser>`: a function from the argument text as typed (`cmd.rest`, "" when there is
  none) to a typed value, run after the creator check and before the handler, which finds the
  value in `cmd.value`. A parser refuses bad input by raising a DomainError (`ChatInputError`
  with the sentence to show, or a domain error with a code of replies.MESSAGES): the user gets
  the polite reply and the handler does not run. `args=True` takes arguments without a parser
  (the handler reads `cmd.args` / `cmd.rest`). A command that takes arguments (a parser or
  True) may have its keyword glued to them: `提现100`; one that takes none must be the whole
  message.
From the registry come the lookup tables of the parser (SLASH, KEYWORDS), the handler table,
the chat menus (`menu("main")`, `menu("join")`), the help text, the WeChat official account's
menu and the Telegram command menu (setMyCommands). Help lines and menus keep the order of
declaration: the area modules are imported in that order by bots/commands/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis

from bots.commands.i18n import N_, _, use_locale
from bots.types import Button, Incoming, Reply
from models import withdrawals
from models.users import User

if TYPE_CHECKING:
    from models.network import Creator

MENUS = ("main", "join", "wechat")
# The official account's three top buttons (WeChat allows 3, with up to 5 entries each).
WECHAT_GROUPS = (N_("推广"), N_("团队"), N_("我的"))
HELP_TITLE = N_("千星机器人命令（英文命令与中文关键词效果相同）：")


@dataclass(frozen=True)
class Command:
    """A parsed update: a registered name (or withdraw_confirm / withdraw_cancel, unknown,
    stale_button) and its arguments."""
    name: str
    args: tuple[str, ...] = ()
    rest: str = ""  # the text after the command word, as typed (script topics)
    via_button: bool = False
    value: Any = None  # the arguments as parsed by the command's declared parser (`args=`)


@dataclass
class Context:
    incoming: Incoming
    user: User
    settings: Any  # qianxing.settings.Settings
    redis: Redis
    withdraw_policy: withdrawals.WithdrawPolicy
    creator: Creator | None = None  # set for commands declared with creator=True
    ai: Any = None  # content_ai.provider.Provider; None: the offline path answers
    outbound: Any = None  # bots.sender.Sender of the process: a handler that writes outbox rows kicks its drain

    @property
    def private(self) -> bool:
        return self.incoming.chat_kind != "group"

    @property
    def locale(self) -> str:
        return self.incoming.locale

    @property
    def display_name(self) -> str:
        return (self.incoming.sender.name or self.user.nickname or "").strip()[:64]


Handler = Callable[[Context, Command], list[Reply]]
Parser = Callable[[str], Any]  # the argument text -> a typed value; raises a DomainError on bad input


@dataclass(frozen=True)
class MenuPlace:
    """Where a command's button sits: `menu` is "main" (creators), "join" (not yet creators)
    or "wechat" (the official account's menu); `row` is the row (for "wechat": the index in
    WECHAT_GROUPS), `col` the place in it, `label` the button text (a catalog message id)."""
    menu: str
    row: int
    col: int
    label: str


@dataclass(frozen=True)
class Spec:
    name: str
    handler: Handler
    slash: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    private: bool = False
    menu: tuple[MenuPlace, ...] = ()
    help: str | None = None
    args: bool = False  # takes arguments (a keyword may be glued to them)
    telegram: bool = True  # in the Telegram command menu (when it has a help line)
    creator: bool = False  # creators only: others are told to join first
    parser: Parser | None = None  # the arguments' parser (cmd.value)

    @property
    def public(self) -> bool:
        """Typed by users (slash or keyword), not only a button's callback."""
        return bool(self.slash)


REGISTRY: dict[str, Spec] = {}
# The parser's tables, filled as commands are declared.
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {}  # name -> (slash, keywords, args)
SLASH: dict[str, str] = {}
KEYWORDS: dict[str, str] = {}
HANDLERS: dict[str, Handler] = {}
KEYWORDS_LONGEST_FIRST: list[str] = []


def command(name: str, *, slash: tuple[str, ...] | None = None, keywords: tuple[str, ...] = (),
            private: bool = False, menu: tuple[MenuPlace, ...] | MenuPlace = (), help: str | None = None,
            args: bool | Parser = False, creator: bool = False, callback_only: bool = False,
            telegram: bool = True) -> Callable[[Handler], Handler]:
    """Declare a command (see the module's docstring). `callback_only` commands have no slash
    name or keyword: they run from a button's callback data (withdraw_confirm) or the parser
    (unknown, stale_button)."""
    parser = None if isinstance(args, bool) else args
    takes_args = parser is not None or args is True
    aliases = () if callback_only else tuple(s.lstrip("/").lower() for s in (slash or (name,)))
    places = (menu,) if isinstance(menu, MenuPlace) else tuple(menu)

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"chat command {name!r} declared twice")
        for alias in aliases:
            if alias in SLASH:
                raise ValueError(f"/{alias} is already the command {SLASH[alias]!r}")
        for kw in keywords:
            if kw in KEYWORDS:
                raise ValueError(f"keyword {kw!r} is already the command {KEYWORDS[kw]!r}")
        for place in places:
            if place.menu not in MENUS:
                raise ValueError(f"unknown menu {place.menu!r}")
        spec = Spec(name, handler, aliases, tuple(keywords), private, places, help, takes_args, telegram,
                    creator, parser)
        REGISTRY[name] = spec
        HANDLERS[name] = handler
        if spec.public:
            COMMANDS[name] = (aliases, spec.keywords, takes_args)
            SLASH.update(dict.fromkeys(aliases, name))
            KEYWORDS.update(dict.fromkeys(spec.keywords, name))
            KEYWORDS_LONGEST_FIRST[:] = sorted(KEYWORDS, key=len, reverse=True)
        return handler

    return register


def menu_key(name: str) -> str:
    """The menu-click key of a command (the WeChat menu's `key`, a button's callback data)."""
    return f"CMD_{name.upper()}"


def private_only() -> frozenset[str]:
    """Commands that show money or goods of the sender: answered in a private chat only."""
    return frozenset(name for name, spec in REGISTRY.items() if spec.private)


def _places(menu_name: str) -> list[tuple[MenuPlace, Spec]]:
    found = [(p, spec) for spec in REGISTRY.values() for p in spec.menu if p.menu == menu_name]
    return sorted(found, key=lambda ps: (ps[0].row, ps[0].col))


def menu(menu_name: str) -> tuple[tuple[Button, ...], ...]:
    """The button rows of a chat menu ("main" or "join"), labels in the current locale."""
    rows: dict[int, list[Button]] = {}
    for place, spec in _places(menu_name):
        rows.setdefault(place.row, []).append(Button(_(place.label), menu_key(spec.name)))
    return tuple(tuple(rows[r]) for r in sorted(rows))


def help_text() -> str:
    """The help text in the current locale: a title and one line per command, in the order
    of declaration."""
    lines = [_(HELP_TITLE)] + [_(spec.help) for spec in REGISTRY.values() if spec.help]
    return "\n".join(lines)


def wechat_menu() -> dict[str, Any]:
    """The official account's menu (`qianxing wechat menu`): every CLICK key is a command key
    the core also takes as a button press, so a menu click and the matching keyword or Telegram
    button run the same command. Always Chinese (WeChat users get Chinese)."""
    groups: dict[int, list[dict[str, str]]] = {}
    with use_locale("zh"):
        for place, spec in _places("wechat"):
            groups.setdefault(place.row, []).append(
                {"type": "click", "name": _(place.label), "key": menu_key(spec.name)})
        return {"button": [{"name": _(WECHAT_GROUPS[row]), "sub_button": groups[row]} for row in sorted(groups)]}


def telegram_commands(*, private: bool) -> list[tuple[str, str]]:
    """(command, description) pairs of the Telegram command menu in the current locale: every
    command with a help line, in a group only those answered there. The description is the
    help line's text after " — "."""
    found = []
    for spec in REGISTRY.values():
        if not (spec.help and spec.telegram and spec.public) or (spec.private and not private):
            continue
        line = _(spec.help)
        found.append((spec.slash[0], line.split(" — ", 1)[-1].strip()[:256]))
    return found
