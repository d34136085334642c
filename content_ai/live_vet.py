"""The one gate every model text of the live content (talk tracks, real-time prompts, funnel
hints) passes before anyone sees it: cleaned (control characters out, whitespace folded,
bounded), checked against the facts it was written from (content_ai.guard: no number or
promise the facts do not state) and moderated (content_ai.moderation). None: drop it for the
offline text."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from content_ai import guard, moderation

log = logging.getLogger("content_ai.live")


def clean(text: str, limit: int) -> str:
    """Control and format characters out (zero-width ones included), whitespace folded; the
    characters themselves are kept (full-width Chinese punctuation stays)."""
    text = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "Cf" else " " for ch in text or "")
    return re.sub(r"\s+", " ", text).strip()[:limit]


def vetted(text: str, facts: str, *, kind: str, subject: str = "", limit: int = 400,
           allowed: Iterable[str | int] = (), settings: Any = None) -> str | None:
    """The text to show, or None: empty, over `limit`, a number or promise not in `facts`, or
    blocked by moderation. Logs why (never the text)."""
    text = clean(text, limit + 1)
    if not text or len(text) > limit:
        log.info("live content %s dropped: empty or too long", kind)
        return None
    verdict = guard.check(text, facts, allowed=allowed)
    if not verdict.ok:
        log.info("live content %s dropped by the guard: %s", kind, "; ".join(verdict.reasons))
        return None
    decision = moderation.moderate(text, kind=kind, subject=subject, settings=settings)
    if decision.blocked or not decision.text.strip():
        log.info("live content %s blocked by moderation", kind)
        return None
    return decision.text
