"""Group-buy chat notices through the one sender (models/group_cards.py says what they say).

- `progress(team_ids)`: a team tied to a community group (`GroupTeam.chat_id`, set when a
  member posts its card there) gets its card, with the new progress, posted in that group.
  Coalesced: at most one progress post per team per GROUP_CARD_MIN_INTERVAL_S (a Redis gate
  per team); a payment inside the interval queues ONE delayed run at the interval's end, which
  posts the progress as it is then (and takes the gate for the next interval). The outbox key
  is per (team, paid count), so a job run twice, or two runs at the same count, post once.
  The group's own bucket in the sender (its per-group rate) decides when it goes out.
- `succeeded(team_ids)`: "拼团成功，正在发货" in the team's group (once per team) and a private
  notice to each member holding a place (once per member), on the channel that reaches them
  (models/reminders.py `channel_for`: Telegram, the WeChat 48-hour window, a subscribe consent
  of topic `groupbuy`).
- `failed(team_ids)`: a private notice to each member whose payment is being refunded.

Private notices of one team are written in one transaction together with the subscribe
consents they use; keys written before are skipped first, so a re-run neither sends nor uses
a consent twice. Drains are scheduled after the commit.

Called by the group-buy jobs once their transactions have committed (the delivery drain after
`groupbuy.advance`, the expiry job after `close_team`): directly when they run in the worker, or
queued with `enqueue(kind, team_ids)`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from redis.exceptions import RedisError

from models import group_cards
from models.db import connection, db, utcnow
from models.groupbuy import TeamState
from tasks.context import runtime

log = logging.getLogger(__name__)

GATE = "qianxing:group:card:{}"  # a team's progress gate (one post per interval)
LATER = "qianxing:group:card:{}:later"  # one delayed progress run per team at a time
JOBS = {"progress": "tasks.group_notices.progress", "succeeded": "tasks.group_notices.succeeded",
        "failed": "tasks.group_notices.failed"}


def enqueue(kind: str, team_ids: list[int], *, delay_s: float = 0.0) -> None:
    """Queue a notice job (`kind`: progress, succeeded, failed) for these teams."""
    ids = sorted({int(t) for t in team_ids})
    if not ids:
        return
    rt = runtime()
    try:
        if delay_s > 0:
            rt.queue.enqueue_in(dt.timedelta(seconds=delay_s), JOBS[kind], ids, delayed=True, job_timeout=120)
        else:
            rt.queue.enqueue(JOBS[kind], ids, job_timeout=120)
    except RedisError as exc:
        log.error("could not queue group %s notices for %d teams (%s)", kind, len(ids), type(exc).__name__)


def progress(team_ids: list[int], *, delayed: bool = False) -> dict[str, int]:
    """Post the progress of these teams in their groups (see the module docstring)."""
    rt = runtime()
    interval_ms = int(rt.settings.GROUP_CARD_MIN_INTERVAL_S) * 1000
    posted = throttled = 0
    platforms: set[str] = set()
    with connection():
        now = utcnow()
        for card in group_cards.cards_of(team_ids):
            if delayed:  # the coalesced post at the end of an interval: it takes the next one
                _forget_later(rt, card.team_id)
            if card.state != TeamState.OPEN or not card.chat_id or not card.chat_platform or card.paid < 1:
                continue
            wait_ms = _gate(rt, card.team_id, interval_ms, force=delayed)
            if wait_ms:
                throttled += 1
                _later(rt, card.team_id, wait_ms)
                continue
            payload = group_cards.card_payload(card, now, platform=card.chat_platform,
                                               share_base=rt.settings.PUBLIC_BASE_URL)
            if rt.sender.enqueue(group_cards.progress_key(card.team_id, card.paid), card.chat_platform, card.chat_id,
                                 payload, chat_kind="group", schedule=False):
                posted += 1
            platforms.add(card.chat_platform)
    _schedule(rt, platforms)
    return {"posted": posted, "throttled": throttled}


def _gate(rt: Any, team_id: int, interval_ms: int, *, force: bool = False) -> int:
    """0 when this team may post now (the gate is taken for the interval), else the ms left.
    `force` (the delayed run) takes the gate whatever is left of it."""
    if interval_ms <= 0:
        return 0
    try:
        if rt.redis.set(GATE.format(team_id), 1, nx=not force, px=interval_ms):
            return 0
        return max(int(rt.redis.pttl(GATE.format(team_id))), 1)
    except RedisError:
        return 0  # no gate without Redis: the per-count key still posts each count once


def _later(rt: Any, team_id: int, wait_ms: int) -> None:
    try:
        if rt.redis.set(LATER.format(team_id), 1, nx=True, px=wait_ms + 60_000):
            enqueue("progress", [team_id], delay_s=wait_ms / 1000 + 0.2)
    except RedisError:
        pass


def _forget_later(rt: Any, team_id: int) -> None:
    try:
        rt.redis.delete(LATER.format(team_id))
    except RedisError:
        pass


def succeeded(team_ids: list[int]) -> dict[str, int]:
    """The success message in each team's group and a private notice to each member."""
    rt = runtime()
    counts = {"group": 0, "members": 0, "unreachable": 0}
    platforms: set[str] = set()
    with connection():
        for card in group_cards.cards_of(team_ids):
            if card.state != TeamState.SUCCEEDED:
                continue
            if card.chat_id and card.chat_platform:
                link = group_cards.share_url(rt.settings.PUBLIC_BASE_URL, card.team_id)
                if rt.sender.enqueue(group_cards.succeeded_key(card.team_id), card.chat_platform, card.chat_id,
                                     {"text": group_cards.succeeded_group_text(card), "link": link},
                                     chat_kind="group", schedule=False):
                    counts["group"] += 1
                platforms.add(card.chat_platform)
            _members(rt, card, group_cards.OK, group_cards.HOLDING, counts, platforms)
    _schedule(rt, platforms)
    return counts


def failed(team_ids: list[int]) -> dict[str, int]:
    """A private notice to each member of these failed teams whose payment is refunded."""
    rt = runtime()
    counts = {"group": 0, "members": 0, "unreachable": 0}
    platforms: set[str] = set()
    with connection():
        for card in group_cards.cards_of(team_ids):
            if card.state == TeamState.FAILED:
                _members(rt, card, group_cards.FAILED, group_cards.REFUNDING, counts, platforms)
    _schedule(rt, platforms)
    return counts


def _members(rt: Any, card: group_cards.TeamCard, kind: str, states: tuple[str, ...], counts: dict[str, int],
             platforms: set[str]) -> None:
    """One team's private notices of `kind`, new keys only, with their consents, in one transaction."""
    now = utcnow()
    with db.atomic():
        recipients = group_cards.members_to_notify(card.team_id, states, now)
        keyed = [(group_cards.member_key(card.team_id, kind, r.user_id), r) for r in recipients]
        done = rt.sender.states([k for k, _ in keyed]) if keyed else {}
        messages, consents = [], []
        for key, r in keyed:
            if key in done:
                continue
            push = group_cards.push_for(r, now)
            if push is None:
                counts["unreachable"] += 1
                continue
            payload = group_cards.member_payload(card, kind, push, amount_fen=r.amount_fen,
                                                 template_id=rt.settings.GROUP_NOTICE_TEMPLATE_ID,
                                                 share_base=rt.settings.PUBLIC_BASE_URL)
            messages.append((key, push.platform, push.chat_id, payload))
            platforms.add(push.platform)
            if push.uses_consent:
                consents.append(r.user_id)
        if messages:
            counts["members"] += rt.sender.write(messages)
            group_cards.use_consents(consents)


def _schedule(rt: Any, platforms: set[str]) -> None:
    for platform in sorted(platforms):
        try:
            rt.sender.schedule(platform, None)
        except RedisError:  # the periodic drains find the rows
            log.error("could not schedule the %s drain for group-buy notices", platform)
