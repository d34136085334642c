"""The model call log (issue 16): one `ai_call` row per call the provider makes or refuses.

content_ai/provider.py writes a row beside its log line for every chat or embeddings call it
handles once a model is configured: answered (`ok`), answered from the cache (`cached`), or sent
to the offline path (`timeout`, `http_5xx`, `http_4xx`, `connection`, `invalid`,
`breaker_open`, `quota`, `error`). A row holds when, what kind, the caller's short purpose label
("answer", "script", "talk_track", "hint", "hook", "funnel_hint", ...), the creator whose quota
it counts against, the model name, the outcome, the latency, the token counts and the estimated
cost. Never the prompt, never the answer, never the key.

Cost is an integer in MILLI-FEN (`cost_mfen`, 1/1000 fen): a single call of a cheap model costs
a fraction of a fen, and rounding each call up to a whole fen would overstate a day's cost many
times over. The estimate per call is rounded UP to the next milli-fen; sums are exact integers;
the admin shows yuan (`mfen_to_yuan`), rounded up to the fen.

Writing a row never breaks the call: `record` swallows database errors (logged as a warning),
runs in a savepoint when the caller is inside a transaction, and opens and closes a connection
of its own when the thread has none. Retention: `prune` deletes rows older than
AI_CALL_KEEP_DAYS, `batch` rows per transaction (tasks/ai_calls.py, daily).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import peewee as pw

from models.db import BaseModel, db, execute, utcnow

log = logging.getLogger(__name__)

KINDS = ("chat", "embed")
OUTCOMES = ("ok", "cached", "timeout", "http_5xx", "http_4xx", "connection", "invalid", "breaker_open",
            "quota", "error")
PURPOSE_MAX = 32
MODEL_MAX = 100
BEIJING = dt.timezone(dt.timedelta(hours=8))  # quotas and the admin's days are Beijing days
MFEN_PER_FEN = 1000


class AICall(BaseModel):
    at = pw.DateTimeField(default=utcnow)  # naive UTC
    kind = pw.CharField(max_length=8)  # chat | embed
    purpose = pw.CharField(max_length=PURPOSE_MAX, default="")  # the caller's label; "" when none given
    creator_id = pw.BigIntegerField(null=True)  # no foreign key: the log outlives nothing it points at
    model = pw.CharField(max_length=MODEL_MAX, default="")
    outcome = pw.CharField(max_length=16)
    latency_ms = pw.IntegerField(default=0)
    prompt_tokens = pw.IntegerField(default=0)
    completion_tokens = pw.IntegerField(default=0)
    cost_mfen = pw.BigIntegerField(default=0)  # estimated cost in milli-fen (1/1000 fen), rounded up

    class Meta:
        table_name = "ai_call"
        indexes = ((("at",), False), (("creator_id", "at"), False))


TABLES: list[type[pw.Model]] = [AICall]


@dataclass(frozen=True)
class CallRow:
    kind: str
    outcome: str
    model: str = ""
    purpose: str = ""
    creator_id: int | None = None
    latency_ms: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_mfen: int = 0
    at: dt.datetime = field(default_factory=utcnow)


_INSERT = ("INSERT INTO ai_call (at, kind, purpose, creator_id, model, outcome, latency_ms, prompt_tokens, "
           "completion_tokens, cost_mfen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def creator_key(creator_id: object) -> int | None:
    """The creator id as stored: an int, or None for anything that is not one."""
    if isinstance(creator_id, bool):
        return None
    if isinstance(creator_id, int):
        return creator_id
    if isinstance(creator_id, str) and creator_id.strip().lstrip("-").isdigit():
        return int(creator_id.strip())
    return None


def _params(row: CallRow) -> tuple:
    return (row.at, row.kind[:8], (row.purpose or "")[:PURPOSE_MAX], row.creator_id, (row.model or "")[:MODEL_MAX],
            row.outcome[:16], max(0, int(row.latency_ms)), max(0, int(row.prompt_tokens)),
            max(0, int(row.completion_tokens)), max(0, int(row.cost_mfen)))


def record(row: CallRow) -> bool:
    """Insert one row (one cheap INSERT); False when the database refused. Never raises."""
    try:
        opened = db.is_closed()
        if opened:
            db.connect()
        try:
            with db.atomic():  # a savepoint inside the caller's transaction: a failure here spoils nothing there
                execute(_INSERT, _params(row))
        finally:
            if opened:
                db.close()
        return True
    except Exception as exc:  # noqa: BLE001 - the call log must never break the call
        log.warning("ai call log: row not written (%s)", type(exc).__name__)
        return False


def prune(keep_days: int, *, now: dt.datetime | None = None, batch: int = 5000) -> int:
    """Delete the rows older than `keep_days`, `batch` per transaction; returns how many.
    Running it twice, or side by side, deletes nothing more."""
    if keep_days < 1 or batch < 1:
        raise ValueError("keep_days and batch must be positive")
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    deleted_total = 0
    while True:
        with db.atomic():
            deleted = execute("DELETE FROM ai_call WHERE id IN (SELECT id FROM ai_call WHERE at < %s LIMIT %s)",
                              (cutoff, batch)).rowcount
        deleted_total += deleted
        if deleted < batch:
            return deleted_total


# -- reading (the admin's usage page) ----------------------------------------------------------------

def beijing_day(moment: dt.datetime | None = None) -> dt.date:
    return (moment or utcnow()).replace(tzinfo=dt.UTC).astimezone(BEIJING).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a Beijing day as naive UTC."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=BEIJING).astimezone(dt.UTC).replace(tzinfo=None)
    return start, start + dt.timedelta(days=1)


@dataclass
class DayUsage:
    day: dt.date
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_mfen: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    by_purpose: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    chat_ok: int = 0
    chat_cached: int = 0

    @property
    def cache_hit_bp(self) -> int | None:
        """Cached chat answers per answered chat call (ok + cached), in basis points; None
        without any (embeddings are not cached)."""
        answered = self.chat_ok + self.chat_cached
        return None if not answered else self.chat_cached * 10_000 // answered


def usage_by_day(days: Iterable[dt.date]) -> list[DayUsage]:
    """Totals per Beijing day (one grouped query per day on the `at` index)."""
    out = []
    for day in days:
        start, end = day_bounds(day)
        usage = DayUsage(day)
        rows = (AICall.select(AICall.kind, AICall.purpose, AICall.outcome, pw.fn.COUNT(AICall.id),
                              pw.fn.SUM(AICall.prompt_tokens), pw.fn.SUM(AICall.completion_tokens),
                              pw.fn.SUM(AICall.cost_mfen))
                .where((AICall.at >= start) & (AICall.at < end))
                .group_by(AICall.kind, AICall.purpose, AICall.outcome).tuples())
        for kind, purpose, outcome, calls, p_tok, c_tok, cost in rows:
            usage.calls += calls
            usage.prompt_tokens += int(p_tok or 0)
            usage.completion_tokens += int(c_tok or 0)
            usage.cost_mfen += int(cost or 0)
            usage.by_outcome[outcome] = usage.by_outcome.get(outcome, 0) + calls
            usage.by_purpose[purpose] = usage.by_purpose.get(purpose, 0) + calls
            usage.by_kind[kind] = usage.by_kind.get(kind, 0) + calls
            if kind == "chat" and outcome == "ok":
                usage.chat_ok += calls
            elif kind == "chat" and outcome == "cached":
                usage.chat_cached += calls
        out.append(usage)
    return out


def recent(limit: int = 50) -> list[AICall]:
    return list(AICall.select().order_by(AICall.id.desc()).limit(limit))


def top_creators(day: dt.date, limit: int = 10) -> list[tuple[int, int, int]]:
    """(creator id, model calls that counted against the quota, cost in milli-fen) for the day,
    most calls first. Cached answers use no quota; every other chat row of a creator did."""
    start, end = day_bounds(day)
    calls = pw.fn.COUNT(AICall.id)
    rows = (AICall.select(AICall.creator_id, calls, pw.fn.SUM(AICall.cost_mfen))
            .where((AICall.at >= start) & (AICall.at < end) & AICall.creator_id.is_null(False)
                   & (AICall.kind == "chat") & (AICall.outcome != "cached"))
            .group_by(AICall.creator_id).order_by(calls.desc(), AICall.creator_id).limit(limit).tuples())
    return [(int(cid), int(n), int(cost or 0)) for cid, n, cost in rows]


def mfen_to_yuan(mfen: int) -> str:
    """Milli-fen as yuan with two decimals, rounded UP to the fen (an estimate never understates)."""
    fen = -(-int(mfen) // MFEN_PER_FEN)
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"
