"""Group-buy jobs (issue 14): closing expired teams and refunding their members.

- `close_team(team_id)`: the team's own delayed job at its expiry (tasks.queues.close_team_at);
- `close_expired()`: periodic (every 30 s), every team whose window passed, in chunks of
  GROUP_CLOSE_CHUNK, one transaction per team (models/group_life.py `close_team`); it also hands
  paid member orders a dead drain left behind back to the delivery drain;
- `refund_members(order_ids)`: payments.refund_order per member (the refund number is the
  order's, so WeChat Pay never pays one twice); a refusal counts an attempt and sets the next
  try by GROUP_REFUND_BACKOFF_S, then hourly;
- `retry_refunds()`: periodic, the refunds whose next try has come, and members waiting for a
  refund nobody asked for (a job lost, a worker killed between the close and the refunds).

Everything is idempotent through the database: a team closes once (its state, under its lock),
a member is refunded once (the refund row, unique per order, and its ledger key).
"""

from __future__ import annotations

import datetime as dt
import logging

from models import groupbuy, payments
from models.db import connection, utcnow
from models.errors import InvalidState
from models.failures import is_unavailable
from tasks import group_notices, queues
from tasks.context import runtime

log = logging.getLogger(__name__)

REASON = "group-buy team did not fill in time"
STRANDED_AFTER_S = 60  # a paid member order not advanced for this long is handed to the drain again


def close_team(team_id: int) -> str:
    """Close one team at its expiry (nothing happens to a team that filled or is not due)."""
    with connection():
        closed = groupbuy.close_team(team_id)
    _after_close([closed])
    return closed.state


def close_expired() -> dict[str, int]:
    """Periodic: close every team whose window passed, chunk by chunk, then refund and deliver
    what the closings decided; and re-queue paid member orders no drain advanced."""
    chunk = runtime().settings.GROUP_CLOSE_CHUNK
    counts = {"closed": 0, "failed": 0, "succeeded": 0, "refunds": 0, "stranded": 0}
    while True:
        with connection():
            now = utcnow()
            due = groupbuy.due_teams(now, chunk)
            outcomes = []
            for team_id in due:
                try:
                    outcomes.append(groupbuy.close_team(team_id, now=now))
                except Exception as exc:  # one team never holds back the others; the next run retries it
                    if is_unavailable(exc):
                        raise
                    log.error("closing group team %s failed: %s", team_id, type(exc).__name__)
        _after_close(outcomes)
        for c in outcomes:
            counts["closed"] += c.changed
            counts["failed"] += c.changed and c.state == groupbuy.TeamState.FAILED
            counts["succeeded"] += c.changed and c.state == groupbuy.TeamState.SUCCEEDED
            counts["refunds"] += len(c.refund)
        if len(due) < chunk or not any(c.changed for c in outcomes):
            break
    with connection():
        stranded = groupbuy.stranded(utcnow() - dt.timedelta(seconds=STRANDED_AFTER_S), 1000)
    if stranded:
        queues.deliver_many(stranded)
        counts["stranded"] = len(stranded)
    return counts


def _after_close(outcomes: list[groupbuy.Closed]) -> None:
    """After the closings committed: refunds queued, virtual successes delivered, notices."""
    refund = sorted({o for c in outcomes for o in c.refund})
    if refund:
        queues.refund_members(refund)
    deliver = sorted({o for c in outcomes for o in c.deliverable})
    if deliver:
        queues.deliver_many(deliver)
    changed = [c for c in outcomes if c.changed]
    group_notices.enqueue("failed", [c.team_id for c in changed if c.state == groupbuy.TeamState.FAILED])
    group_notices.enqueue("succeeded", [c.team_id for c in changed if c.state == groupbuy.TeamState.SUCCEEDED])


def refund_members(order_ids: list[int]) -> dict[str, int]:
    """Refund these members' orders through the gateway, one at a time; a refusal schedules the
    next try (GROUP_REFUND_BACKOFF_S). Returns counts (refunded, retry, skipped)."""
    rt = runtime()
    schedule = [int(p) for p in rt.settings.GROUP_REFUND_BACKOFF_S.split(",")]
    counts = {"refunded": 0, "retry": 0, "skipped": 0}
    with connection():
        for order_id in order_ids:
            try:
                refund = payments.refund_order(
                    order_id, rt.gateway, actor=groupbuy.ACTOR, reason=REASON,
                    revoke_unrevealed=rt.settings.REFUND_UNREVEALED_KEYS == "revoke")
            except payments.GatewayError as exc:
                due = groupbuy.refund_failed(order_id, schedule)
                log.warning("group refund of order %s failed (%s); next try at %s", order_id, exc.code, due)
                counts["retry"] += 1
                continue
            except InvalidState:  # never paid (cancelled meanwhile): nothing to send back
                counts["skipped"] += 1
                continue
            counts["refunded" if refund.state == "succeeded" else "retry"] += 1
    return counts


def retry_refunds(limit: int = 200) -> dict[str, int]:
    """Periodic: member refunds whose next try has come, or that nobody asked for yet."""
    with connection():
        due = groupbuy.refunds_due(utcnow(), limit)
    return refund_members(due) if due else {"refunded": 0, "retry": 0, "skipped": 0}
