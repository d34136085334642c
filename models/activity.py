"""Activity data: short-video plays and live-room entries, from the mini-program tracking route
and from platform CSV exports; short-drama plays and click-throughs to the live room from the
tracking route only. Every event has an id and is stored once (a replayed batch or a re-imported
file changes nothing); they feed star levels, traffic rewards and the funnels (levels and rollups
read video_play and live_entry only; models/drama_funnel.py reads the drama kinds)."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import peewee as pw

from models import ledger
from models.db import BaseModel, db, execute, execute_batch, is_postgres, placeholders, utcnow
from models.errors import InvalidInput, NotFound
from models.network import CODE_PATTERN


class ActivityKind(StrEnum):
    VIDEO_PLAY = "video_play"
    LIVE_ENTRY = "live_entry"
    DRAMA_PLAY = "drama_play"  # ref: a short-drama episode id (models/drama.py)
    DRAMA_CLICK = "drama_click"  # ref: the episode whose link to the live room was followed


# Kinds each source may report: platform exports know nothing of our drama episodes.
KINDS = {"api": tuple(ActivityKind), "csv": (ActivityKind.VIDEO_PLAY, ActivityKind.LIVE_ENTRY)}
DRAMA_KINDS = (ActivityKind.DRAMA_PLAY, ActivityKind.DRAMA_CLICK)


class ActivityEvent(BaseModel):
    event_id = pw.CharField(max_length=64, unique=True)
    creator_id = pw.BigIntegerField()
    kind = pw.CharField(max_length=16)
    ref = pw.CharField(max_length=40, default="")  # video id or live session id
    count = pw.IntegerField(default=1)  # a platform export reports plays in aggregate
    occurred_at = pw.DateTimeField()
    source = pw.CharField(max_length=8)  # api, csv
    user_id = pw.BigIntegerField(null=True)  # the viewer, when the mini-program reported it
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("creator_id", "kind", "ref"), False),)


class TrafficTier(BaseModel):
    """Traffic rewards by table: a video past `min_plays` earns `reward_fen` in total (a higher
    tier pays the difference)."""

    min_plays = pw.BigIntegerField(primary_key=True)
    reward_fen = pw.BigIntegerField()


DEFAULT_TIERS = ((100_000, 10_000), (500_000, 50_000), (1_000_000, 100_000))


def seed_tiers() -> int:
    """Write the default traffic tiers where none exist; returns the rows written."""
    if TrafficTier.select().exists():
        return 0
    TrafficTier.insert_many([{"min_plays": m, "reward_fen": r} for m, r in DEFAULT_TIERS]).execute()
    return len(DEFAULT_TIERS)


# ---- recording events -------------------------------------------------------------------------

EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
REF_PATTERN = re.compile(r"^[A-Za-z0-9_.:+/=-]{1,40}$")  # platform video ids, live session ids
MAX_COUNT = {"api": 100, "csv": 10_000_000}  # one API event is a handful of plays at most
DEFAULT_MAX_BATCH = 100  # the ACTIVITY_MAX_BATCH default; callers pass the setting
FUTURE_SLACK = dt.timedelta(days=1)  # clock skew allowed on occurred_at
EARLIEST = dt.datetime(2000, 1, 1)
SOURCES = ("api", "csv")


@dataclass(frozen=True)
class TrackEvent:
    """One reported event: `count` plays or entries of `ref` for the creator `creator_code`."""

    event_id: str
    creator_code: str
    kind: str  # video_play | live_entry | drama_play | drama_click
    ref: str  # video id, live session id or drama episode id, <= 40 characters
    count: int
    occurred_at: dt.datetime  # naive UTC, or aware (converted to UTC)


class InvalidEvent(InvalidInput):
    """One event of a batch is malformed: `index` is its position in the batch, `field` the
    offending field; the code names the field (invalid_event_id, invalid_kind, ...)."""

    def __init__(self, index: int, field: str, message: str, *, code: str) -> None:
        super().__init__(f"events[{index}].{field}: {message}", code=code)
        self.index, self.field = index, field


@dataclass(frozen=True)
class RecordResult:
    accepted: int  # new events stored
    duplicates: int  # events whose id was stored before (or twice in this batch)

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is None else value.astimezone(dt.UTC).replace(tzinfo=None)


def _check(index: int, ev: TrackEvent, max_count: int, now: dt.datetime,
           kinds: tuple[str, ...] = KINDS["csv"]) -> TrackEvent:
    """The event with occurred_at in naive UTC; raises InvalidEvent."""
    if not isinstance(ev.event_id, str) or not EVENT_ID_PATTERN.match(ev.event_id):
        raise InvalidEvent(index, "event_id", "1-64 letters, digits or _ . : -", code="invalid_event_id")
    if not isinstance(ev.creator_code, str) or not CODE_PATTERN.match(ev.creator_code):
        raise InvalidEvent(index, "creator_code", "an invite code is 4-32 letters, digits, - or _",
                           code="invalid_creator_code")
    if ev.kind not in kinds:
        raise InvalidEvent(index, "kind", f"must be {' or '.join(kinds)}", code="invalid_kind")
    if not isinstance(ev.ref, str) or not REF_PATTERN.match(ev.ref):
        raise InvalidEvent(index, "ref", "1-40 letters, digits or _ . : + / = -", code="invalid_ref")
    if ev.kind in DRAMA_KINDS and not (ev.ref.isascii() and ev.ref.isdigit() and len(ev.ref) <= 18
                                       and int(ev.ref) > 0):
        raise InvalidEvent(index, "ref", "a drama event's ref is an episode id", code="invalid_ref")
    if not isinstance(ev.count, int) or isinstance(ev.count, bool) or not 1 <= ev.count <= max_count:
        raise InvalidEvent(index, "count", f"must be a whole number from 1 to {max_count}",
                           code="invalid_count")
    if not isinstance(ev.occurred_at, dt.datetime):
        raise InvalidEvent(index, "occurred_at", "must be a timestamp", code="invalid_occurred_at")
    when = _utc(ev.occurred_at)
    if not EARLIEST <= when <= now + FUTURE_SLACK:
        raise InvalidEvent(index, "occurred_at", "must not lie in the future or before 2000",
                           code="invalid_occurred_at")
    return TrackEvent(ev.event_id, ev.creator_code, str(ev.kind), ev.ref, ev.count, when)


def _creator_ids(codes: set[str]) -> dict[str, int]:
    """Active creators by code: one query."""
    if not codes:
        return {}
    wanted = sorted(codes)
    rows = execute(f"SELECT code, id FROM creator WHERE active AND code IN ({placeholders(wanted)})",
                   wanted).fetchall()
    return {code: cid for code, cid in rows}


def _episode_owners(episode_ids: set[int]) -> dict[int, int]:
    """episode id -> the creator id of its series (models/drama.py's tables): one query."""
    if not episode_ids:
        return {}
    wanted = sorted(episode_ids)
    rows = execute("SELECT e.id, s.creator_id FROM drama_episode e JOIN drama_series s ON s.id = e.series_id "
                   f"WHERE e.id IN ({placeholders(wanted)})", wanted).fetchall()
    return {eid: cid for eid, cid in rows}


def _insert(rows: list[tuple[TrackEvent, int]], *, source: str, user_id: int | None) -> int:
    """One INSERT for the rows (event, creator id); returns how many were new."""
    if not rows:
        return 0
    stamp = ActivityEvent.created_at.db_value
    now = stamp(utcnow())
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    params = [v for ev, cid in rows for v in (ev.event_id, cid, ev.kind, ev.ref, ev.count,
                                               stamp(ev.occurred_at), source, user_id, now)]
    inserted = execute(
        "INSERT INTO activity_event (event_id, creator_id, kind, ref, count, occurred_at, source, "
        f"user_id, created_at) VALUES {values} ON CONFLICT (event_id) DO NOTHING RETURNING id",
        params).fetchall()
    return len(inserted)


def record_events(events: list[TrackEvent], *, user_id: int | None, source: str,
                  max_batch: int = DEFAULT_MAX_BATCH) -> RecordResult:
    """Store a batch of events, each at most once (by event_id): a replayed batch changes
    nothing and reports its events as duplicates.

    Everything is checked before anything is written. Raises InvalidInput: too_many_events
    (more than `max_batch`), invalid_source, or an InvalidEvent naming the bad item's index
    (invalid_event_id, invalid_creator_code, invalid_kind, invalid_ref, invalid_count -- 1..100
    from the API, 1..10,000,000 from a CSV export -- invalid_occurred_at); NotFound
    unknown_creator when a code belongs to no active creator, unknown_episode when a drama
    event's episode is not one of that creator's (the drama kinds come from the API only).
    """
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}", code="invalid_source")
    if not isinstance(events, list | tuple):
        raise InvalidInput("events must be a list", code="invalid_events")
    if len(events) > max_batch:
        raise InvalidInput(f"at most {max_batch} events per batch", code="too_many_events")
    if not events:
        return RecordResult(0, 0)
    now = utcnow()
    checked = [_check(i, ev, MAX_COUNT[source], now, KINDS[source]) for i, ev in enumerate(events)]
    ids = _creator_ids({ev.creator_code for ev in checked})
    owners = _episode_owners({int(ev.ref) for ev in checked if ev.kind in DRAMA_KINDS})
    for i, ev in enumerate(checked):
        if ev.creator_code not in ids:
            raise NotFound(f"events[{i}].creator_code: no creator has the code {ev.creator_code!r}",
                           code="unknown_creator")
        if ev.kind in DRAMA_KINDS and owners.get(int(ev.ref)) != ids[ev.creator_code]:
            raise NotFound(f"events[{i}].ref: {ev.creator_code!r} has no drama episode {ev.ref}",
                           code="unknown_episode")
    with db.atomic():
        accepted = _insert([(ev, ids[ev.creator_code]) for ev in checked], source=source,
                           user_id=user_id)
    return RecordResult(accepted, len(checked) - accepted)


# ---- CSV import of platform exports -------------------------------------------------------------

CSV_COLUMNS = ("event_id", "creator_code", "type", "ref", "count", "occurred_at")
CSV_REQUIRED = CSV_COLUMNS[1:]
CSV_CHUNK = 1000  # rows per INSERT (9 parameters each, well under SQLite's limit)
MAX_BAD_REPORTED = 1000


@dataclass(frozen=True)
class BadRow:
    line: int
    code: str
    message: str


@dataclass
class ImportReport:
    rows: int = 0  # data rows read
    imported: int = 0
    duplicates: int = 0
    bad_count: int = 0
    bad: list[BadRow] = field(default_factory=list)  # the first MAX_BAD_REPORTED of them

    def as_dict(self) -> dict:
        return {"rows": self.rows, "imported": self.imported, "duplicates": self.duplicates,
                "bad_count": self.bad_count,
                "bad": [{"line": b.line, "code": b.code, "message": b.message} for b in self.bad]}


def derived_event_id(creator_code: str, kind: str, ref: str, count: str, occurred_at: str) -> str:
    """A stable id for an export row without one: the same row imported again gets the same id
    (so it is a duplicate). Two identical rows in one export are one event."""
    body = "\x1f".join(s.strip() for s in (creator_code, kind.lower(), ref, count, occurred_at))
    return "csv-" + hashlib.sha256(body.encode()).hexdigest()[:40]


# Chinese platforms export local wall-clock times without an offset.
EXPORT_TIMEZONE = "Asia/Shanghai"


def _parse_time(text: str, local: dt.tzinfo) -> dt.datetime:
    """ISO 8601 (`2026-05-01T12:00:00+08:00`, `2026-05-01 12:00:00`, trailing Z); a timestamp
    without an offset is a wall-clock time in `local`."""
    value = dt.datetime.fromisoformat(text.strip())
    return _utc(value if value.tzinfo is not None else value.replace(tzinfo=local))


def _row_event(row: dict[str, str], local: dt.tzinfo) -> TrackEvent:
    def col(name: str) -> str:
        return (row.get(name) or "").strip()

    count_text = col("count")
    try:
        count = int(count_text)
    except ValueError:
        raise InvalidInput(f"count {count_text!r} is not a whole number", code="invalid_count") from None
    try:
        when = _parse_time(col("occurred_at"), local)
    except ValueError:
        raise InvalidInput(f"occurred_at {col('occurred_at')!r} is not an ISO 8601 time",
                           code="invalid_occurred_at") from None
    event_id = col("event_id") or derived_event_id(col("creator_code"), col("type"), col("ref"),
                                                   count_text, col("occurred_at"))
    return TrackEvent(event_id, col("creator_code"), col("type").lower(), col("ref"), count, when)


def import_csv(path: str | Path, *, timezone: str = EXPORT_TIMEZONE) -> ImportReport:
    """Import a platform export (UTF-8, optional BOM; header row with the CSV_COLUMNS, event_id
    optional; an occurred_at without an offset is read in `timezone`, an IANA name). Bad rows
    are skipped and reported with their line numbers; rows stored before (by event_id, or by
    the derived id) count as duplicates, so importing a file twice adds nothing. Rows are
    written in chunks of CSV_CHUNK, each its own transaction (a re-run after a crash finishes
    the job). Raises InvalidInput: invalid_csv when the header lacks a column,
    invalid_timezone for an unknown zone.
    """
    try:
        local = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {timezone!r}", code="invalid_timezone") from None
    report = ImportReport()
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        missing = [c for c in CSV_REQUIRED if c not in names]
        if missing:
            raise InvalidInput(f"the CSV header lacks {', '.join(missing)}", code="invalid_csv")
        chunk: list[tuple[int, TrackEvent]] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank line
            report.rows += 1
            line = reader.line_num
            try:
                row = dict(zip(names, values, strict=False))
                chunk.append((line, _check(0, _row_event(row, local), MAX_COUNT["csv"], utcnow())))
            except InvalidInput as exc:
                _bad(report, line, exc.code, exc.message.split(": ", 1)[-1])
            if len(chunk) >= CSV_CHUNK:
                _import_chunk(chunk, report)
                chunk = []
        _import_chunk(chunk, report)
    report.bad.sort(key=lambda b: b.line)
    return report


def _bad(report: ImportReport, line: int, code: str, message: str) -> None:
    report.bad_count += 1
    if len(report.bad) < MAX_BAD_REPORTED:
        report.bad.append(BadRow(line, code, message))


def _import_chunk(chunk: list[tuple[int, TrackEvent]], report: ImportReport) -> None:
    if not chunk:
        return
    ids = _creator_ids({ev.creator_code for _, ev in chunk})
    rows = []
    for line, ev in chunk:
        if ev.creator_code in ids:
            rows.append((ev, ids[ev.creator_code]))
        else:
            _bad(report, line, "unknown_creator", f"no creator has the code {ev.creator_code!r}")
    with db.atomic():
        imported = _insert(rows, source="csv", user_id=None)
    report.imported += imported
    report.duplicates += len(rows) - imported


# ---- traffic rewards by table -------------------------------------------------------------------

TRAFFIC_REWARD = "traffic_reward"  # ledger kind
TRAFFIC_LOCK = 742013  # pg_advisory_xact_lock id: one award run at a time


def traffic_key(creator_id: int, ref: str, min_plays: int) -> str:
    return f"traffic:{creator_id}:{ref}:{min_plays}"


def _parse_traffic_key(key: str) -> tuple[int, str, int]:
    _, rest = key.split(":", 1)
    cid, rest = rest.split(":", 1)
    ref, min_plays = rest.rsplit(":", 1)  # a ref may itself contain ':'
    return int(cid), ref, int(min_plays)


def award_traffic_rewards() -> int:
    """Pay traffic rewards by the TrafficTier table: for each (creator, video) the highest tier
    its total plays reached pays that tier's reward minus what lower tiers already paid, as one
    ledger transaction keyed `traffic:{creator}:{ref}:{min_plays}` (REWARD_EXPENSE debit,
    creator available credit). Two set-based reads; safe to run concurrently and repeatedly
    (one run at a time under a lock, and every payment's key is unique). Returns the number
    of payments posted."""
    tiers = [(t.min_plays, t.reward_fen) for t in TrafficTier.select().order_by(TrafficTier.min_plays)]
    if not tiers:
        return 0
    payments: list[tuple[str, int, str, int]] = []
    with db.atomic():
        if is_postgres():
            execute("SELECT pg_advisory_xact_lock(%s)", (TRAFFIC_LOCK,))
        totals = execute(
            'SELECT a.creator_id, a.ref, SUM(a."count") FROM activity_event a '
            "JOIN creator c ON c.id = a.creator_id AND c.active WHERE a.kind = %s "
            'GROUP BY a.creator_id, a.ref HAVING SUM(a."count") >= %s',
            (ActivityKind.VIDEO_PLAY.value, tiers[0][0])).fetchall()
        if not totals:
            return 0
        paid_keys: set[str] = set()
        paid: dict[tuple[int, str], int] = defaultdict(int)
        for key, amount in execute(
                "SELECT t.key, p.amount_fen FROM ledger_transaction t JOIN posting p ON p.txn_id = t.id "
                "WHERE t.kind = %s AND p.amount_fen < 0", (TRAFFIC_REWARD,)).fetchall():
            cid, ref, _ = _parse_traffic_key(key)
            paid_keys.add(key)
            paid[(cid, ref)] += -int(amount)
        for cid, ref, plays in totals:
            min_plays, reward = max((t for t in tiers if t[0] <= int(plays)), key=lambda t: t[0])
            key = traffic_key(cid, ref, min_plays)
            amount = reward - paid[(cid, ref)]
            if key in paid_keys or amount <= 0:
                continue
            payments.append((key, cid, ref, amount))
            paid_keys.add(key)
        statements: list[tuple[str, list]] = []
        for key, cid, ref, amount in payments:
            statements += ledger.posting_statements(
                key, TRAFFIC_REWARD,
                [ledger.Leg(ledger.REWARD_EXPENSE, amount),
                 ledger.Leg(ledger.creator_account(cid, ledger.AVAILABLE), -amount)],
                memo=f"traffic reward: video {ref} past {_parse_traffic_key(key)[2]} plays")
            if len(statements) >= 200:
                execute_batch(statements)
                statements = []
        if statements:
            execute_batch(statements)
    return len(payments)
