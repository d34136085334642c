"""The admin's push jobs: a broadcast's fan-out, and the pushes an operator retried.

`send_broadcast(id)` writes a broadcast's outbox rows through the one sender
(`Sender.broadcast`: rows in bulk under unique keys, one drain job), a chunk of recipients at a
time (`models.broadcasts.fan_out`). It is safe to run twice or to resume: the keys and the
broadcast's cursor make every recipient one row. The drain jobs it starts do the sending, with
the sender's buckets (a paid broadcast goes through the paid-broadcast bucket,
TELEGRAM_PAID_BROADCAST_PER_S, and carries `allow_paid_broadcast`).

`queue_broadcast` and `after_retry` are the enqueue helpers the admin calls after its
transaction commits; a Redis outage is logged and answered False (the page offers to queue the
broadcast again; the periodic outbound drain still finds requeued rows).

`resume_unfinished` (periodic, tasks/periodic.py) queues the job again for a broadcast whose
fan-out stopped: not `written`, and nothing new for RESUME_AFTER_S (never started since it was
sent, or no outbox row written since): its job was lost (Redis down when it was sent, a Redis
that lost its queue) or died (a killed worker, retries used up). That is safe for the same
reasons as a second run, and a job that finds its broadcast written does nothing. A broadcast
sent more than RESUME_WITHIN ago is left to the operator's button: a day-old announcement is
not sent on its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from peewee import SQL
from redis.exceptions import RedisError
from rq import Retry

from models import broadcasts
from models.broadcasts import Broadcast
from models.chat import OutboundMessage
from models.db import connection, utcnow
from tasks import queues
from tasks.context import runtime

log = logging.getLogger(__name__)

BROADCAST_TIMEOUT_S = 3600  # 100,000 recipients are 100 chunks of one INSERT each: minutes at most
BROADCAST_RETRY = Retry(max=3, interval=[5, 30, 120])
RESUME_AFTER_S = 600  # a chunk takes seconds: this long without progress, the job is gone
RESUME_WITHIN = dt.timedelta(days=1)  # older unfinished broadcasts wait for an operator
RESUMED_FLAG = "qianxing:broadcast:resumed:{}"  # one re-queue per broadcast per RESUME_AFTER_S


def send_broadcast(broadcast_id: int) -> dict[str, Any]:
    """Write the broadcast's outbox rows (idempotent) and make sure a drain sends them."""
    rt = runtime()
    with connection():
        b = broadcasts.get(broadcast_id)
        if b.state == "written":  # a second delivery of the job, or a resume that came late
            return {"broadcast": broadcast_id, "written": b.written, "state": b.state}

        def write(chats: Sequence[str]) -> int:
            return rt.sender.broadcast(b.outbox_id, chats, b.payload, paid=b.paid, platform=b.platform,
                                       chat_kind=b.chat_kind)

        done = broadcasts.fan_out(broadcast_id, write)
    log.info("broadcast %s: %d recipients written", broadcast_id, done.written)
    return {"broadcast": broadcast_id, "written": done.written, "state": done.state}


def queue_broadcast(broadcast_id: int) -> bool:
    """Queue the broadcast's job; False when Redis could not take it."""
    try:
        runtime().queue.enqueue("tasks.broadcasts.send_broadcast", broadcast_id,
                                job_id=f"broadcast-{broadcast_id}-{uuid.uuid4().hex[:8]}",  # readable, never reused
                                job_timeout=BROADCAST_TIMEOUT_S, retry=BROADCAST_RETRY)
    except RedisError as exc:
        log.error("could not queue broadcast %s (%s: %s)", broadcast_id, type(exc).__name__, exc)
        return False
    return True


def stalled(now: dt.datetime, after_s: int = RESUME_AFTER_S) -> list[int]:
    """Broadcasts sent between RESUME_WITHIN and `after_s` ago, not written, that made no
    progress for `after_s`: not started since, and no outbox row written since (one indexed
    look-up per unfinished broadcast; there are few)."""
    cutoff = now - dt.timedelta(seconds=after_s)
    unfinished = (Broadcast.select(Broadcast.id, Broadcast.started_at)
                  .where((Broadcast.state != "written") & (Broadcast.created_at <= cutoff)
                         & (Broadcast.created_at >= now - RESUME_WITHIN))
                  .order_by(Broadcast.id))
    found = []
    for b in unfinished:
        if b.started_at is not None and b.started_at > cutoff:
            continue
        progressed = (OutboundMessage.select(SQL("1"))
                      .where((OutboundMessage.broadcast_id == b.outbox_id) & (OutboundMessage.created_at > cutoff))
                      .exists())
        if not progressed:
            found.append(b.id)
    return found


def resume_unfinished(*, after_s: int = RESUME_AFTER_S, now: dt.datetime | None = None) -> list[int]:
    """Queue the job again for each broadcast whose fan-out stopped (`stalled`), at most once
    per broadcast every `after_s` (a flag in Redis, so two sweeps or a queue backlog do not
    pile jobs up). Returns the broadcasts re-queued."""
    rt = runtime()
    with connection():
        found = stalled(now or utcnow(), after_s)
    resumed = []
    for broadcast_id in found:
        try:
            if not rt.redis.set(RESUMED_FLAG.format(broadcast_id), "1", nx=True, ex=after_s):
                continue
        except RedisError as exc:
            log.error("could not resume broadcasts %s (%s: %s)", found, type(exc).__name__, exc)
            break
        if queue_broadcast(broadcast_id):
            resumed.append(broadcast_id)
    if resumed:
        log.warning("broadcasts %s had stopped fanning out; queued again", resumed)
    return resumed


def after_retry(platforms: Iterable[str], notices: Iterable[tuple[int, int, str, str]]) -> bool:
    """Push what an operator retried: a drain per platform of the requeued chat messages, the
    delivery-notice job per requeued order notice (`tasks.queues.notify`) and one level
    evaluation for requeued level-up notices (it pushes pending ones first). False when Redis
    could not take a job (the periodic drains and sweeps pick the rows up later)."""
    rt = runtime()
    ok = True
    level_ups = False
    try:
        for platform in platforms:
            rt.sender.schedule(platform, None)
        for _id, order_id, channel, _kind in notices:
            if order_id:
                queues.notify(order_id, channel)
            else:
                level_ups = True
        if level_ups:
            rt.queue.enqueue("tasks.network.evaluate_levels", job_timeout=3600)
    except RedisError as exc:
        log.error("could not queue the retried pushes (%s: %s)", type(exc).__name__, exc)
        ok = False
    return ok
