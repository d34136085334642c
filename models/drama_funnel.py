"""The short-drama funnel: drama plays -> click-throughs to the live room -> live-room entries
of the linked sessions -> sold orders placed in those sessions, per series and per creator.

Sources: activity_event kinds drama_play and drama_click (ref = episode id; the series'
creator, checked when recorded) and live_entry (ref = session id, the session's creator), read
through the (creator_id, kind, ref) index; orders by the partial live_id index, paid or
delivered (refunded ones do not count). Every figure is an indexed GROUP BY over the page's
series, never a scan of all events or orders.

A session linked from several series counts in each of them (the entries and orders of a
session cannot be told apart by the drama that brought the viewer); a creator's total counts
each linked session once. Entries and orders of a linked session include viewers who came by
another way: the funnel shows what the sessions the dramas lead to achieved."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from models.activity import ActivityKind
from models.db import execute, placeholders
from models.network import SOLD, Creator


@dataclass(frozen=True)
class DramaFunnel:
    plays: int = 0
    clicks: int = 0  # click-throughs from an episode to its live room
    live_entries: int = 0  # entries into the linked sessions
    orders: int = 0  # sold orders placed in the linked sessions
    gmv_fen: int = 0
    sessions: int = 0  # distinct linked sessions

    @property
    def click_bp(self) -> int:
        """Click-throughs per play, basis points, rounded down."""
        return self.clicks * 10_000 // self.plays if self.plays else 0

    @property
    def order_bp(self) -> int:
        """Orders per live entry, basis points, rounded down."""
        return self.orders * 10_000 // self.live_entries if self.live_entries else 0

    def as_dict(self) -> dict:
        return {"plays": self.plays, "clicks": self.clicks, "live_entries": self.live_entries,
                "orders": self.orders, "gmv_fen": self.gmv_fen, "sessions": self.sessions,
                "click_bp": self.click_bp, "order_bp": self.order_bp}


def _drama_counts(creator_ids: list[int], episode_ids: list[int]) -> dict[tuple[int, str], int]:
    """(episode id, kind) -> events counted."""
    if not episode_ids:
        return {}
    kinds = [ActivityKind.DRAMA_PLAY.value, ActivityKind.DRAMA_CLICK.value]
    refs = [str(e) for e in episode_ids]
    rows = execute(
        'SELECT ref, kind, SUM("count") FROM activity_event '
        f"WHERE creator_id IN ({placeholders(creator_ids)}) AND kind IN ({placeholders(kinds)}) "
        f"AND ref IN ({placeholders(refs)}) GROUP BY ref, kind", [*creator_ids, *kinds, *refs]).fetchall()
    return {(int(ref), kind): int(total or 0) for ref, kind, total in rows}


def _session_figures(session_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """session id -> (live entries, sold orders, GMV fen): three indexed queries."""
    if not session_ids:
        return {}
    owners = dict(execute(f"SELECT id, creator_id FROM live_session WHERE id IN ({placeholders(session_ids)})",
                          session_ids).fetchall())
    entries: dict[int, int] = {}
    if owners:
        creators, refs = sorted(set(owners.values())), [str(s) for s in owners]
        for ref, cid, total in execute(
                'SELECT ref, creator_id, SUM("count") FROM activity_event '
                f"WHERE creator_id IN ({placeholders(creators)}) AND kind = %s "
                f"AND ref IN ({placeholders(refs)}) GROUP BY ref, creator_id",
                [*creators, ActivityKind.LIVE_ENTRY.value, *refs]).fetchall():
            if owners.get(int(ref)) == cid:  # the session's own creator's entries
                entries[int(ref)] = int(total or 0)
    sold = {lid: (int(n), int(gmv or 0)) for lid, n, gmv in execute(
        'SELECT live_id, COUNT(*), SUM(amount_fen) FROM "order" '
        f"WHERE live_id IN ({placeholders(session_ids)}) AND status IN ({placeholders(SOLD)}) GROUP BY live_id",
        [*session_ids, *SOLD]).fetchall()}
    return {sid: (entries.get(sid, 0), *sold.get(sid, (0, 0))) for sid in session_ids}


def _episodes(series_ids: list[int]) -> list[tuple[int, int, int | None, int]]:
    """(episode id, series id, linked session id, series creator id) of the series."""
    if not series_ids:
        return []
    return execute(
        "SELECT e.id, e.series_id, e.live_session_id, s.creator_id FROM drama_episode e "
        f"JOIN drama_series s ON s.id = e.series_id WHERE e.series_id IN ({placeholders(series_ids)})",
        series_ids).fetchall()


def _combine(counts: dict[tuple[int, str], int], figures: dict[int, tuple[int, int, int]],
             episode_ids: list[int], session_ids: set[int]) -> DramaFunnel:
    play, click = ActivityKind.DRAMA_PLAY.value, ActivityKind.DRAMA_CLICK.value
    per_session = [figures.get(s, (0, 0, 0)) for s in session_ids]
    return DramaFunnel(plays=sum(counts.get((e, play), 0) for e in episode_ids),
                       clicks=sum(counts.get((e, click), 0) for e in episode_ids),
                       live_entries=sum(f[0] for f in per_session), orders=sum(f[1] for f in per_session),
                       gmv_fen=sum(f[2] for f in per_session), sessions=len(session_ids))


def by_series(series_ids: list[int]) -> dict[int, DramaFunnel]:
    """The funnel of each series (a page of them): four indexed queries whatever the count."""
    series_ids = sorted(set(series_ids))
    episodes = _episodes(series_ids)
    creators = sorted({row[3] for row in episodes})
    counts = _drama_counts(creators, [row[0] for row in episodes]) if creators else {}
    figures = _session_figures(sorted({row[2] for row in episodes if row[2]}))
    eps: dict[int, list[int]] = defaultdict(list)
    sessions: dict[int, set[int]] = defaultdict(set)
    for eid, sid, session_id, _ in episodes:
        eps[sid].append(eid)
        if session_id:
            sessions[sid].add(session_id)
    return {sid: _combine(counts, figures, eps[sid], sessions[sid]) for sid in series_ids}


def of_creator(creator: Creator | int) -> DramaFunnel:
    """A creator's whole drama funnel: every series, each linked session counted once."""
    cid = creator if isinstance(creator, int) else creator.id
    kinds = [ActivityKind.DRAMA_PLAY.value, ActivityKind.DRAMA_CLICK.value]
    counts = dict(execute(
        f'SELECT kind, SUM("count") FROM activity_event WHERE creator_id = %s AND kind IN ({placeholders(kinds)}) '
        "GROUP BY kind", [cid, *kinds]).fetchall())
    sessions = sorted(s for (s,) in execute(
        "SELECT DISTINCT e.live_session_id FROM drama_episode e JOIN drama_series s ON s.id = e.series_id "
        "WHERE s.creator_id = %s AND e.live_session_id IS NOT NULL", [cid]).fetchall())
    figures = _session_figures(sessions)
    per_session = list(figures.values())
    return DramaFunnel(plays=int(counts.get(kinds[0]) or 0), clicks=int(counts.get(kinds[1]) or 0),
                       live_entries=sum(f[0] for f in per_session), orders=sum(f[1] for f in per_session),
                       gmv_fen=sum(f[2] for f in per_session), sessions=len(sessions))
