r"""Community groups: what the bot does with a group message, and the rules it follows, kept as
data (`GroupRule`, `GroupConfig` in models.chat).

For one group update, in order:
1. new members (`Incoming.joined`) get a welcome: the group's welcome text (or a default), its
   coupon text, the promo link of `GroupConfig.promo_ref`, and, while a group_welcome campaign
   coupon is active, that coupon for each new member the bot knows (once per user; the welcome
   names who got it);
2. a member's message that moderation blocks (`content_ai.moderation.moderate`, kind
   "group_user", read before anything else reads it), or one with a banned word
   (`GroupConfig.banned_words`, matched case-insensitively and ignoring spaces), gets a polite
   warning and nothing else;
3. a command runs as in a private chat, except the private ones (withdraw, vouchers, statement,
   earnings, resend), which answer "请私聊机器人"; slash commands, button presses and whole-message
   Chinese keywords count as commands (`bots.commands.parse`);
4. other text: from the group's linked creator (`promo_ref`'s creator) it is a human talking:
   the bot's AI answers stay silent in the group for HANDOFF_SILENCE_S; else the
   highest-priority matching `GroupRule` (scope the group's chat key or `*`; exact, contains or
   regex; ties by age) answers; with none, when `GroupConfig.ai_fallback` is on, a grounded
   answer or a hand-off to a human (bots/commands/handoff_flow.py: content_ai.answers, hand-off
   cases, the silence after a human answered); else the bot stays silent.
Every reply counts against the group's limit, `GroupConfig.replies_per_minute` or the
TELEGRAM_RATE_PER_GROUP_PER_MIN setting, in a fixed one-minute window in Redis; beyond it the
bot stays silent. A group whose config is inactive is ignored altogether.

Regex rules cannot hang the bot: they run on RE2 (google-re2, `import re2`), which matches in
time linear in the text for every pattern it accepts, so no pattern can backtrack
catastrophically (`(a+)+$` is as fast as `a+$`). `save_rule` refuses, with a clear message,
patterns RE2 cannot compile (syntax errors, backreferences, lookarounds, repeat counts above
1000), longer than REGEX_MAX characters or compiling to more than REGEX_MAX_PROGRAM
instructions; the same check runs again when a rule is read (rows written some other way are
skipped, never run), and a regex only ever sees the first REGEX_TEXT_MAX characters of a
message. No timeout is needed. Matching is case-insensitive on NFKC-normalised text; as in
RE2, `\d`, `\w` and `\s` are ASCII classes (use `\p{Han}` and the like for others).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from typing import Any

import re2

from bots import commands
from bots.commands import Command, Context, handoff_flow
from bots.types import Button, Reply
from content_ai.moderation import moderate
from models import coupons, handoff
from models.chat import GroupConfig, GroupRule, MatchType, Platform
from models.coupons import CouponGrant
from models.db import db
from models.errors import DomainError, InvalidInput, NotFound
from models.identities import identity_of

log = logging.getLogger(__name__)

REGEX_MAX = 200
REGEX_MAX_PROGRAM = 10_000  # RE2 instructions: bounds the (linear) cost per character
REGEX_TEXT_MAX = 500
REPLY_MAX = 2000
BANNED_MAX = 200
WORD_MAX = 50
DEFAULT_WELCOME = "欢迎 {name} 加入本群！发送 /help 查看机器人能做什么。"
PRIVATE_HINT = "请私聊机器人：这个命令涉及你的收益或卡券，只在私聊里回答。"
WELCOME_KEY = "group_welcome"  # one group welcome coupon per user, whichever group they join
WELCOME_COUPON = "🎁 新人券「{coupon}」已放入 {names} 的账户，在小程序「我的优惠券」查看，下单时可用。"


# ---- rules as data ----------------------------------------------------------------------------


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold()


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is answered to the operator, not logged by RE2
    return options


_OPTIONS = _re2_options()
_BACKREF = re.compile(r"invalid escape sequence: \\[1-9]")
_LOOKAROUND = re.compile(r"invalid perl operator: \(\?<?[=!]")


def _re2_problem(error: re2.error) -> str:
    """RE2's compile error as a sentence for the operator."""
    detail = error.args[0] if error.args else ""
    detail = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    if _BACKREF.search(detail):
        return "正则不支持反向引用（如 \\1）"
    if _LOOKAROUND.search(detail):
        return "正则不支持环视（如 (?=...)、(?<=...)）"
    return f"正则无法解析：{detail}"


def _compile(pattern: str) -> tuple[re2._Regexp | None, str | None]:
    """(compiled, None), or (None, why the pattern may not be a rule)."""
    if not pattern:
        return None, "正则不能为空"
    if len(pattern) > REGEX_MAX:
        return None, f"正则最长 {REGEX_MAX} 个字符"
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        return None, _re2_problem(exc)
    if compiled.programsize > REGEX_MAX_PROGRAM:
        return None, "正则太复杂，请写得简单些或拆成多条规则"
    return compiled, None


def regex_problem(pattern: str) -> str | None:
    """Why a pattern may not be a rule (None: it may)."""
    return _compile(pattern)[1]


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re2._Regexp | None:
    compiled, problem = _compile(pattern)
    if problem is not None:
        log.warning("group rule regex skipped: %s", problem)
    return compiled


def _check_scope(scope: str) -> str:
    scope = (scope or "").strip()
    if scope == "*":
        return scope
    platform, sep, chat_id = scope.partition(":")
    if not sep or platform not in {p.value for p in Platform} or not chat_id \
            or len(scope) > 80 or any(ch.isspace() for ch in scope):
        raise InvalidInput("scope is '*' or a group's chat key such as telegram:-100123", code="invalid_scope")
    return scope


def save_rule(scope: str, match: str, pattern: str, reply: str, priority: int = 0,
              *, active: bool = True) -> GroupRule:
    """Add an auto-reply rule. Raises InvalidInput (invalid_scope, invalid_match, invalid_pattern,
    unsafe_regex, invalid_reply, invalid_priority); nothing is written then."""
    scope = _check_scope(scope)
    try:
        match = MatchType(match).value
    except ValueError:
        raise InvalidInput("match is exact, contains or regex", code="invalid_match") from None
    pattern = (pattern or "").strip()
    if not pattern or len(pattern) > GroupRule.pattern.max_length:
        raise InvalidInput(f"the pattern is 1-{GroupRule.pattern.max_length} characters", code="invalid_pattern")
    if match == MatchType.REGEX:
        problem = regex_problem(pattern)
        if problem:
            raise InvalidInput(problem, code="unsafe_regex")
    reply = (reply or "").strip()
    if not reply or len(reply) > REPLY_MAX:
        raise InvalidInput(f"the reply is 1-{REPLY_MAX} characters", code="invalid_reply")
    if isinstance(priority, bool) or not isinstance(priority, int) or not -1_000_000 <= priority <= 1_000_000:
        raise InvalidInput("priority is a whole number between -1000000 and 1000000", code="invalid_priority")
    return GroupRule.create(scope=scope, match=match, pattern=pattern, reply=reply, priority=priority,
                            active=active)


def list_rules(scope: str | None = None) -> list[GroupRule]:
    query = GroupRule.select()
    if scope is not None:
        query = query.where(GroupRule.scope == scope)
    return list(query.order_by(GroupRule.scope, GroupRule.priority.desc(), GroupRule.id))


def set_rule_active(rule_id: int, active: bool) -> GroupRule:
    if not GroupRule.update(active=active).where(GroupRule.id == rule_id).execute():
        raise NotFound(f"rule {rule_id} not found", code="rule_not_found")
    return GroupRule.get_by_id(rule_id)


def _rule_matches(rule: GroupRule, text: str, folded: str) -> bool:
    if rule.match == MatchType.EXACT:
        return folded == _norm(rule.pattern).strip()
    if rule.match == MatchType.CONTAINS:
        return _norm(rule.pattern) in folded
    if rule.match == MatchType.REGEX:
        compiled = _compiled(rule.pattern)
        return compiled is not None and compiled.search(text[:REGEX_TEXT_MAX]) is not None
    return False


def match_rule(chat_key: str, text: str) -> GroupRule | None:
    """The highest-priority active rule for this group that matches `text` (oldest first on ties)."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        return None
    folded = text.casefold()
    rules = (GroupRule.select().where(GroupRule.active & GroupRule.scope.in_([chat_key, "*"]))
             .order_by(GroupRule.priority.desc(), GroupRule.id))
    for rule in rules:
        if _rule_matches(rule, text, folded):
            return rule
    return None


def configure(chat_key: str, **changes: Any) -> GroupConfig:
    """Create or update a group's config. Fields: title, welcome_text, coupon_text, promo_ref
    (a creator's invite code, or "" to clear), banned_words (a list), replies_per_minute (1-1000,
    or None for the setting), ai_fallback, active. Raises InvalidInput / NotFound (promo_ref)."""
    chat_key = _check_scope(chat_key)
    if chat_key == "*":
        raise InvalidInput("configure one group by its chat key", code="invalid_scope")
    allowed = {"title", "welcome_text", "coupon_text", "promo_ref", "banned_words", "replies_per_minute",
               "ai_fallback", "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"unknown group settings: {', '.join(sorted(unknown))}", code="invalid_config")
    values: dict[str, Any] = {}
    for name in ("title", "welcome_text", "coupon_text"):
        if changes.get(name) is not None:
            limit = {"title": 120, "welcome_text": REPLY_MAX, "coupon_text": 200}[name]
            text = str(changes[name]).strip()
            if len(text) > limit:
                raise InvalidInput(f"{name} is at most {limit} characters", code="invalid_config")
            values[name] = text
    if changes.get("promo_ref") is not None:
        ref = str(changes["promo_ref"]).strip()
        if ref:
            from models.network import by_code

            ref = by_code(ref).code
        values["promo_ref"] = ref or None
    if changes.get("banned_words") is not None:
        words = [str(w).strip() for w in changes["banned_words"] if str(w).strip()]
        if len(words) > BANNED_MAX or any(len(w) > WORD_MAX for w in words):
            raise InvalidInput(f"at most {BANNED_MAX} banned words of up to {WORD_MAX} characters",
                               code="invalid_config")
        values["banned_words"] = list(dict.fromkeys(words))
    if "replies_per_minute" in changes:
        rate = changes["replies_per_minute"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 1000):
            raise InvalidInput("replies_per_minute is 1-1000", code="invalid_config")
        values["replies_per_minute"] = rate
    for name in ("ai_fallback", "active"):
        if changes.get(name) is not None:
            values[name] = bool(changes[name])
    with db.atomic():
        GroupConfig.insert(chat_key=chat_key, **values).on_conflict_ignore().execute()
        if values:
            GroupConfig.update(**values).where(GroupConfig.chat_key == chat_key).execute()
    return GroupConfig.get(GroupConfig.chat_key == chat_key)


# ---- one group update --------------------------------------------------------------------------


def _banned_hit(cfg: GroupConfig | None, text: str) -> bool:
    if cfg is None or not cfg.banned_words or not text:
        return False
    squeezed = re.sub(r"\s+", "", _norm(text))
    return any(w and re.sub(r"\s+", "", _norm(w)) in squeezed for w in cfg.banned_words)


def _limit(cfg: GroupConfig | None, settings: Any) -> int:
    if cfg is not None and cfg.replies_per_minute:
        return int(cfg.replies_per_minute)
    return max(int(settings.TELEGRAM_RATE_PER_GROUP_PER_MIN), 1)


def _within_limit(ctx: Context, cfg: GroupConfig | None, replies: list[Reply]) -> list[Reply]:
    """Count the replies against the group's per-minute budget; keep what fits."""
    if not replies:
        return replies
    limit = _limit(cfg, ctx.settings)
    key = f"{commands.PREFIX}:grp:{ctx.incoming.chat_key}:{int(time.time() // 60)}"
    pipe = ctx.redis.pipeline()
    pipe.incrby(key, len(replies))
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    room = limit - (int(count) - len(replies))
    return replies[:max(room, 0)]


def _welcome_coupon(ctx: Context) -> str | None:
    """The group_welcome campaign coupon (issue 14) for the new members the bot knows (a chat
    identity linked to a user): issued once per user (source_key "group_welcome", so joining
    again, or another group, gives nothing more). The welcome's line about it, or None."""
    coupon = coupons.campaign_coupon("group_welcome")
    if coupon is None:
        return None
    known: dict[int, str] = {}
    for member in ctx.incoming.joined:
        identity = identity_of(ctx.incoming.platform, member.external_id)
        if identity is not None:
            known.setdefault(identity.user_id, (member.name or member.external_id)[:32])
    if not known:
        return None
    before = {u for (u,) in CouponGrant.select(CouponGrant.user_id).where(
        (CouponGrant.coupon == coupon.id) & (CouponGrant.source_key == WELCOME_KEY)
        & CouponGrant.user_id.in_(list(known))).tuples()}
    try:
        coupons.issue(coupon.id, list(known), source="group_welcome", source_key=WELCOME_KEY)
    except DomainError as exc:  # ended or withdrawn a moment ago: the welcome goes without it
        log.info("group welcome coupon not issued: %s", exc.code)
        return None
    new = [name for user_id, name in known.items() if user_id not in before]
    if not new:
        return None
    return WELCOME_COUPON.format(names="、".join(new[:5]), coupon=coupon.name)


def _welcome(ctx: Context, cfg: GroupConfig | None) -> Reply:
    names = "、".join((m.name or m.external_id)[:32] for m in ctx.incoming.joined[:5])
    if len(ctx.incoming.joined) > 5:
        names += f" 等 {len(ctx.incoming.joined)} 位朋友"
    text = (cfg.welcome_text if cfg and cfg.welcome_text else DEFAULT_WELCOME).replace("{name}", names)
    lines = [text]
    link = None
    buttons: tuple[tuple[Button, ...], ...] = ()
    if cfg is not None and cfg.coupon_text:
        lines.append(f"🎁 {cfg.coupon_text}")
    gift = _welcome_coupon(ctx)
    if gift:
        lines.append(gift)
    if cfg is not None and cfg.promo_ref:
        lines.append(f"进店逛逛（微信小程序）：{commands.shop_path(cfg.promo_ref)}")
        link = commands.telegram_link(ctx.settings, commands.shop_payload(cfg.promo_ref))
        if link:
            buttons = ((Button("进店逛逛", url=link),),)
    return Reply(text="\n".join(lines), link=link, buttons=buttons)


def handle(ctx: Context, cmd: Command | None) -> list[Reply]:
    """Everything the bot says in answer to one group update (possibly nothing)."""
    cfg = GroupConfig.get_or_none(GroupConfig.chat_key == ctx.incoming.chat_key)
    if cfg is not None and not cfg.active:
        return []
    replies: list[Reply] = []
    if ctx.incoming.joined:
        replies.append(_welcome(ctx, cfg))
    text = commands.normalize(ctx.incoming.text)
    if text and _moderated_out(ctx, text):
        who = ctx.display_name or "这位群友"
        replies.append(Reply(text=f"{who}，你的消息包含不适宜的内容，请文明交流。"))
    elif text and _banned_hit(cfg, text):
        who = ctx.display_name or "这位群友"
        replies.append(Reply(text=f"{who}，你的消息包含本群禁止的内容，请文明交流。"))
    elif cmd is not None:
        if cmd.name in commands.PRIVATE_ONLY:
            replies.append(Reply(text="请私聊机器人查看卡券。" if cmd.name == "vouchers" else PRIVATE_HINT))
        else:
            replies.extend(commands.execute(ctx, cmd))
    elif text:
        linked = handoff.linked_creator(ctx.incoming.chat_key) if cfg is not None and cfg.promo_ref else None
        if linked is not None and int(linked.user_id) == int(ctx.user.id):
            # the group's own creator speaking is a human answering: the AI keeps quiet a while
            handoff_flow.silence(ctx.redis, ctx.settings, ctx.incoming.chat_key)
            return []
        rule = match_rule(ctx.incoming.chat_key, text)
        if rule is not None:
            replies.append(Reply(text=rule.reply.replace("{name}", ctx.display_name or "")))
        elif cfg is not None and cfg.ai_fallback:
            replies.extend(handoff_flow.answer(ctx, text, linked=linked) or ())
    return _within_limit(ctx, cfg, replies)


def _moderated_out(ctx: Context, text: str) -> bool:
    """A member's message that moderation blocks (content_ai.moderation, kind group_user; only
    non-pass outcomes are logged there)."""
    decision = moderate(text, kind="group_user", subject=f"chat:{ctx.incoming.chat_key}",
                        settings=ctx.settings, record=False)
    return decision.blocked
