"""The reminder planner (periodic, every PLAN_EVERY_S): writes the due reminders and notices of
reserved live sessions into the outbox, then the sender's drains send them at the platforms'
rates (models/reminders.py is the rule; this job only orchestrates).

One run of `plan_reminders`:
1. finds the sessions a message may be due for (`reminders.sessions_to_plan`) and, per
   session, the kinds that may start now (`due_kinds`) plus the unfinished runs of its current
   plan that may go on (`may_continue`); a notice run first supersedes the older plans'
   reminders still waiting in the outbox;
2. streams the run's reservations in keyset chunks of CHUNK after the run's cursor; per chunk,
   ONE transaction writes the outbox rows in bulk (`Sender.write`, keys per reservation and
   kind), clears the subscribe consents they used and moves the cursor (compare-and-set);
3. schedules one drain per platform written to (after the chunk's commit).

A worker killed between chunks leaves the cursor at the last committed chunk: the next run
writes only the rest; a chunk written twice writes no second row (unique keys). Two planners at
once are kept apart by a Redis lock, and by the cursor's compare-and-set if the lock expired.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from models import reminders
from models.db import connection, db, utcnow
from models.reminders import Plan, Policy, ReminderRun
from tasks.context import runtime

log = logging.getLogger(__name__)

CHUNK = 1000  # reservations per transaction
PLAN_EVERY_S = 5  # tasks/periodic.py
LOCK_KEY = "qianxing:reminders:planner"
LOCK_TTL_S = 30  # renewed per chunk; a killed planner blocks the next one at most this long
# Rows written ahead become claimable this long before their moment: a drain needs up to a
# second to claim, reserve and start a batch, so the first sends go out at the moment itself.
SEND_EARLY = dt.timedelta(seconds=1)


class _Lost(Exception):
    """Another planner moved the run's cursor first: this chunk is rolled back."""


def plan_reminders(*, now: dt.datetime | None = None, chunk: int = CHUNK,
                   on_chunk: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Write every due reminder and notice (see the module docstring). `on_chunk(run, rows)`
    is called after each committed chunk (the tests' crash point). Returns counts."""
    rt = runtime()
    redis = rt.redis
    try:
        if not redis.set(LOCK_KEY, 1, nx=True, ex=LOCK_TTL_S):
            return {"skipped": "another planner is running"}
    except RedisError as exc:
        log.error("reminder planner: Redis unavailable (%s); next run", type(exc).__name__)
        return {"skipped": "redis unavailable"}
    policy = Policy.from_settings(rt.settings)
    totals = {"runs": 0, "written": 0, "skipped": 0, "superseded": 0}
    platforms: set[str] = set()
    try:
        with connection():
            when = now or utcnow()
            for session in reminders.sessions_to_plan(when, policy):
                plan = Plan.of(session)
                runs = reminders.runs_of(plan.id, plan.plan_version)
                kinds = set(reminders.due_kinds(plan, when, policy))
                kinds |= {k for k, r in runs.items() if not r.done and reminders.may_continue(plan, k, when, policy)}
                for kind in sorted(kinds, key=_notices_first):
                    if kind in runs and runs[kind].done:
                        continue
                    if kind in (reminders.RESCHEDULED, reminders.CANCELLED):
                        with db.atomic():
                            totals["superseded"] += reminders.supersede(plan, policy)
                    run = runs.get(kind) or reminders.open_run(plan.id, plan.plan_version, kind)
                    totals["runs"] += 1
                    _run(rt, plan, run, when if now else None, policy, chunk, totals, platforms, on_chunk)
    finally:
        _schedule(rt, platforms)
        try:
            redis.delete(LOCK_KEY)
        except RedisError:
            pass
    if totals["written"] or totals["superseded"]:
        log.info("reminders planned: %s", totals)
    return totals


def _notices_first(kind: str) -> tuple[int, str]:
    return (0 if reminders.offset_of(kind) is None else 1, kind)


def _run(rt: Any, plan: Plan, run: ReminderRun, fixed_now: dt.datetime | None, policy: Policy, chunk: int,
         totals: dict[str, int], platforms: set[str], on_chunk: Callable[[str, int], None] | None) -> None:
    share_base = rt.settings.PUBLIC_BASE_URL
    batch_id = reminders.run_id(plan.id, plan.plan_version, run.kind)
    payloads: dict[str, dict[str, Any]] = {}
    while True:
        now = fixed_now or utcnow()
        if not reminders.may_continue(plan, run.kind, now, policy):
            return
        try:
            with db.atomic():
                targets = reminders.targets_after(plan.id, run.cursor, chunk)
                if not targets:
                    due = reminders.due_at(plan, run.kind)
                    if due is None or now >= due:  # before its moment a reservation may still come
                        reminders.finish(run, now)
                    return
                messages, consents, chunk_platforms = [], [], set()
                for target in targets:
                    push = reminders.push_for(plan, run.kind, target, now, policy)
                    if push is None:
                        continue
                    body = payloads.get(push.platform)
                    if body is None:
                        body = payloads[push.platform] = reminders.payload(plan, run.kind, push.platform, policy,
                                                                           share_base)
                    messages.append((reminders.message_key(plan, run.kind, target.reservation_id), push.platform,
                                     push.chat_id, body))
                    chunk_platforms.add(push.platform)
                    if push.uses_consent:
                        consents.append(target.reservation_id)
                due = reminders.due_at(plan, run.kind)
                ready = due - SEND_EARLY if due is not None else None
                written = rt.sender.write(messages, broadcast_id=batch_id,
                                          not_before=ready if ready is not None and ready > now else None) \
                    if messages else 0
                reminders.consume_consents(consents, now)
                if not reminders.advance(run, targets[-1].reservation_id, written, len(targets) - len(messages)):
                    raise _Lost
        except _Lost:
            log.warning("reminder run %s: another planner is on it", batch_id)
            return
        totals["written"] += written
        totals["skipped"] += len(targets) - len(messages)
        if chunk_platforms - platforms:
            _schedule(rt, chunk_platforms - platforms)  # sending starts while the rest is written
            platforms |= chunk_platforms
        try:
            rt.redis.expire(LOCK_KEY, LOCK_TTL_S)
        except RedisError:
            pass
        if on_chunk is not None:
            on_chunk(batch_id, written)


def _schedule(rt: Any, platforms: set[str]) -> None:
    for platform in sorted(platforms):
        try:
            rt.sender.schedule(platform, None)
        except RedisError:  # the periodic drains find the rows
            log.error("could not schedule the %s drain for reminders", platform)
