"""Moderation of generated text and of user text in groups (issue 16).

CONTRACT (the lead's; the moderation helper implements it and keeps the signature):

    moderate(text, *, kind, subject="", settings=None, wechat=None, publish=False, record=True)
        -> Decision(outcome: "pass" | "rewrite" | "block", text: str, hits: tuple[str, ...],
                    decision_id: int | None)

- kind: what the text is: "answer", "script", "talk_track", "hint", "hook", "funnel_hint",
  "group_user" (a member's message in a group), "handoff_reply".
- subject: who or where, for the log: "creator:12", "chat:telegram:-1001", "sku:VIP-M".
- outcome "pass": `text` is the input; "rewrite": `text` has the absolute claims dropped and
  may be shown; "block": `text` is "" and nothing may be shown or sent.
- publish=True with a WeChat client (`wechat`, the mini-program client) and settings that
  configure it: WeChat's msg_sec_check is asked too.
- record=False: no decision row (for hot paths that log only non-pass outcomes).

IMPLEMENTATION
- The word lists (models/moderation.py, edited in the admin) are matched with one pyahocorasick
  automaton over the folded text (`models.moderation.fold`: NFKC, case-folded, letters, digits
  and "%" only), so words split by spaces, punctuation, emoji or zero-width characters
  ("国 家 级", "赌\u200b博") and full-width forms are caught. A word of ASCII letters and digits
  must stand alone in the original text ("casino" is not found inside "occasinos").
- A hit wholly inside an "allow" word is no hit ("第一" is a claim, "第一次" is not). A bare "最"
  is never a word: only the listed "最 + adjective" forms are, so 最近 / 最后 stay.
- Any "block" hit: block. Else "rewrite" hits are dropped: per sentence, the claim is removed
  (with a "的" right after it: "最好的面膜" -> "面膜") and the punctuation tidied; a sentence
  with nothing sensible left (under 3 characters, or ending on a dangling "是"/"为"/"的", or
  under a third of what it was) is dropped whole. Line breaks are kept (a dropped line stays as
  an empty line: callers may split a text of fields by lines). A rewrite that leaves nothing is
  a block.
- Text over MODERATION_MAX_CHARS is blocked unread (hit "text_too_long").
- The automaton is cached per process; the lists' `version()` (count, latest updated_at) is
  checked at most every MODERATION_RELOAD_S seconds, and at once after an edit in this process;
  a change rebuilds it. Lists unreadable (database down): the last automaton, else the
  built-in defaults.
- publish=True, MODERATION_WECHAT_CHECK and a client: `wechat.wxa.check_text_security` (wechatpy
  1.8's msg_sec_check, version 1: errcode 87014 means risky; a version-2 answer's
  result.suggest == "risky" is honoured too) -> block, source "wechat". An error or a timeout
  (the client's timeout bounds it) leaves the local result, logged.
- Never raises: an internal failure blocks generated text and passes a group member's message
  (logged).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ahocorasick

from models import moderation as lists
from models import moderation_log
from models.db import db
from models.moderation import fold

log = logging.getLogger("content_ai.moderation")

OUTCOMES = ("pass", "rewrite", "block")
KINDS = ("answer", "script", "talk_track", "hint", "hook", "funnel_hint", "group_user", "handoff_reply")

WECHAT_RISKY = 87014  # msg_sec_check (version 1): "risky content"
WECHAT_PIECE = 150_000  # characters per msg_sec_check call (WeChat takes up to 500 KB)
WECHAT_PIECES = 3  # at most this many calls per text; the rest is checked locally only
TOO_LONG = "text_too_long"
WECHAT_HIT = "msg_sec_check"


@dataclass(frozen=True)
class Decision:
    outcome: str
    text: str
    hits: tuple[str, ...] = ()
    decision_id: int | None = None

    @property
    def blocked(self) -> bool:
        return self.outcome == "block"


def moderate(text: str, *, kind: str, subject: str = "", settings: Any = None, wechat: Any = None,
             publish: bool = False, record: bool = True) -> Decision:
    try:
        return _moderate(text, kind=kind, subject=subject, settings=settings, wechat=wechat, publish=publish,
                         record=record)
    except Exception:
        log.exception("moderation failed (kind %s); %s", kind, "passing" if kind == "group_user" else "blocking")
        if kind == "group_user":
            return Decision(outcome="pass", text=text if isinstance(text, str) else "")
        return Decision(outcome="block", text="")


# -- matching ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Word:
    word: str
    kind: str
    action: str
    ascii: bool


@dataclass(frozen=True)
class _Hit:
    start: int  # in the original text
    end: int
    word: _Word


class _Matcher:
    def __init__(self, rows: list[tuple[str, str, str]] | tuple[tuple[str, str, str], ...]) -> None:
        by_key: dict[str, list[_Word]] = {}
        for kind, word, action in rows:
            key = fold(word)[0]
            if len(key) >= 2:
                by_key.setdefault(key, []).append(_Word(word, kind, action, key.isascii()))
        self.size = len(by_key)
        self.automaton = ahocorasick.Automaton()
        for key, found in by_key.items():
            self.automaton.add_word(key, (len(key), tuple(found)))
        if by_key:
            self.automaton.make_automaton()

    def find(self, text: str) -> list[_Hit]:
        if not self.size:
            return []
        folded, where = fold(text)
        allows: list[tuple[int, int]] = []
        found: list[tuple[int, int, _Word]] = []
        for end, (length, words) in self.automaton.iter(folded):
            start = end - length + 1
            for w in words:
                if w.action == "allow":
                    allows.append((start, end + 1))
                else:
                    found.append((start, end + 1, w))
        allows.sort()
        found.sort(key=lambda f: f[0])
        hits, i, reach = [], 0, -1
        for start, end, w in found:
            while i < len(allows) and allows[i][0] <= start:  # the farthest end of allows from here back
                reach = max(reach, allows[i][1])
                i += 1
            if reach >= end:
                continue  # wholly inside an allowed word
            a, b = where[start], where[end - 1] + 1
            if w.ascii and not _stands_alone(text, a, b):
                continue
            hits.append(_Hit(a, b, w))
        return hits


def _stands_alone(text: str, a: int, b: int) -> bool:
    before = text[a - 1] if a > 0 else " "
    after = text[b] if b < len(text) else " "
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


@dataclass
class _Cache:
    matcher: _Matcher | None = None
    version: tuple[int, str] | None = None
    checked: float = 0.0
    generation: int = -1
    from_defaults: bool = False


_cache = _Cache()
_lock = threading.Lock()


def forget_cached() -> None:
    """Drop this process's automaton (the next call rebuilds it from the lists)."""
    global _cache
    with _lock:
        _cache = _Cache()


@contextlib.contextmanager
def _connected() -> Iterator[None]:
    """The caller's connection when it has one (never closed here), else one for this call."""
    if db.is_closed():
        with db.connection_context():
            yield
    else:
        yield


def _matcher(settings: Any) -> _Matcher:
    reload_s = float(getattr(settings, "MODERATION_RELOAD_S", 5.0))
    with _lock:
        c = _cache
        now = time.monotonic()
        if c.matcher is not None and c.generation == lists.generation and now - c.checked < reload_s:
            return c.matcher
        generation = lists.generation
        try:
            with _connected():
                version = lists.version()
                if c.matcher is None or c.from_defaults or version != c.version:
                    c.matcher, c.version, c.from_defaults = _Matcher(lists.enabled_words()), version, False
                    log.info("moderation: word lists loaded (%d words)", c.matcher.size)
        except Exception as exc:
            log.warning("moderation: word lists unreadable (%s); using the %s", type(exc).__name__,
                        "last ones loaded" if c.matcher is not None else "built-in defaults")
            if c.matcher is None:
                from models.moderation_defaults import DEFAULTS

                c.matcher, c.from_defaults = _Matcher(DEFAULTS), True
        c.checked, c.generation = now, generation
        return c.matcher


# -- rewriting ---------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^。！？!?；;\n]*[。！？!?；;\n]*")
_DELIMS = "。！？!?；;\n"
_SOFT = "，、,：:；;"
_DANGLING = ("是", "为", "就是", "堪称", "号称", "称为", "作为", "成为", "的", "之一")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _tidy(body: str) -> str:
    body = re.sub(r"[ \t\u3000]{2,}", " ", body)
    body = re.sub(r"(?<=[\u3400-\u9fff，。！？、：；]) +|(?<=\S) +(?=[\u3400-\u9fff，。！？、：；])", "", body)
    body = re.sub(r"[（(【\[]\s*[）)】\]]", "", body)
    previous = None
    while previous != body:
        previous = body
        body = re.sub(rf"[{_SOFT}][ \t\u3000]*(?=[{_SOFT}{_DELIMS}])", "", body)
    return re.sub(rf"^[ \t\u3000{_SOFT}]+", "", body)


def _sentence(sentence: str, spans: list[tuple[int, int]]) -> str:
    """The sentence with the spans (relative to it) dropped, or only its line breaks when
    nothing sensible is left."""
    parts, at = [], 0
    for a, b in spans:
        parts.append(sentence[at:a])
        at = b
        if sentence[at:at + 1] == "的":
            at += 1
    parts.append(sentence[at:])
    body = _tidy("".join(parts))
    core = body.rstrip(_DELIMS + _SOFT + " ")
    kept, was = len(fold(core)[0]), len(fold(sentence)[0])
    if kept < 3 or core.endswith(_DANGLING) or kept * 3 < was:
        return "\n" * sentence.count("\n")
    return body


def rewrite(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` without the spans (start, end in the original), sentence by sentence."""
    spans = _merge(spans)
    out = []
    for m in _SENTENCE.finditer(text):
        s0, s1 = m.span()
        if s0 == s1:
            continue
        inside = [(max(a, s0) - s0, min(b, s1) - s0) for a, b in spans if a < s1 and b > s0]
        out.append(_sentence(text[s0:s1], inside) if inside else text[s0:s1])
    result = "".join(out)  # as many line breaks as the text had: callers may split it by lines
    return result.strip(" \t\u3000") if text == text.strip(" \t\u3000") else result


# -- the decision ------------------------------------------------------------------------------

def _names(hits: list[_Hit]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(h.word.word for h in sorted(hits, key=lambda h: h.start)))


def _moderate(text: Any, *, kind: str, subject: str, settings: Any, wechat: Any, publish: bool,
              record: bool) -> Decision:
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    source = "local"
    if len(text) > int(getattr(settings, "MODERATION_MAX_CHARS", 100_000)):
        outcome, shown, names = "block", "", (TOO_LONG,)
    else:
        hits = _matcher(settings).find(text)
        blocks = [h for h in hits if h.word.action == "block"]
        drops = [h for h in hits if h.word.action == "rewrite"]
        names = _names(blocks or drops)
        if blocks:
            outcome, shown = "block", ""
        elif drops:
            shown = rewrite(text, [(h.start, h.end) for h in drops])
            outcome = "rewrite" if fold(shown)[0] else "block"
            shown = shown if outcome == "rewrite" else ""
        else:
            outcome, shown = "pass", text
        if (outcome != "block" and publish and wechat is not None and shown
                and getattr(settings, "MODERATION_WECHAT_CHECK", False) and _wechat_risky(wechat, shown, kind)):
            outcome, shown, source, names = "block", "", "wechat", (*names, WECHAT_HIT)
    decision_id = None
    if record or outcome != "pass":
        decision_id = _record(kind=kind, subject=subject, outcome=outcome, hits=names, source=source, text=text)
    if outcome != "pass":
        log.info("moderation %s: kind %s, %s, %d hits", outcome, kind, source, len(names))
    return Decision(outcome=outcome, text=shown, hits=names, decision_id=decision_id)


def _record(**fields: Any) -> int | None:
    try:
        with _connected():
            return moderation_log.record(**fields)
    except Exception as exc:
        log.warning("moderation: decision not logged (%s)", type(exc).__name__)
        return None


def _wechat_risky(wechat: Any, text: str, kind: str) -> bool:
    """True when msg_sec_check calls the text risky; False when it passes it, fails or times out."""
    try:
        for n in range(0, min(len(text), WECHAT_PIECE * WECHAT_PIECES), WECHAT_PIECE):
            answer = wechat.wxa.check_text_security(text[n:n + WECHAT_PIECE])
            result = answer.get("result") if isinstance(answer, dict) else None
            if (isinstance(answer, dict) and answer.get("errcode") == WECHAT_RISKY) or (
                    isinstance(result, dict) and result.get("suggest") == "risky"):
                return True
        if len(text) > WECHAT_PIECE * WECHAT_PIECES:
            log.warning("moderation: msg_sec_check saw the first %d characters only", WECHAT_PIECE * WECHAT_PIECES)
        return False
    except Exception as exc:
        if getattr(exc, "errcode", None) == WECHAT_RISKY:
            return True
        log.warning("moderation: msg_sec_check failed (%s %s) for %s; the local result stands",
                    type(exc).__name__, getattr(exc, "errcode", ""), kind)
        return False
