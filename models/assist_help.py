"""Helping an assist: the whole counting rule as one function (models/assist.py has the tables
and the rest of the assist's life).

`help_assist(helper_id, token, ip=..., policy=...)` counts the helper once, in one transaction,
after every check has passed (a refused help writes nothing):

1. the assist exists and is open                                 404 assist_not_found
   (and the helper's user row exists                             401 unauthorized)
2. the helper is not the starter (a person's linked chat
   identities are one user)                                      403 self_assist
3. the helper is not another account of the starter: the same
   WeChat unionid                                                403 same_person
4. the session is live: a help is entering the live room         409 session_not_live
5. this helper has not helped this assist yet                    409 already_helped
6. the assist still needs helpers                                409 assist_complete
7. new-users-only offers: the helper never paid an order          403 not_new_user
8. the helper has helped fewer than `max_helps_per_session`
   assists of this session                                       409 help_limit_reached

Exactness: the assist row is locked first (PostgreSQL FOR UPDATE; SQLite transactions are
IMMEDIATE), so the count and the unlock of one assist are serialised; a helper's helps per
session are an `assist_quota` row raised by a conditional update (`used < max`), so concurrent
helps of one helper on different assists never pass the limit; the unique (assist, helper) key
refuses a duplicate whatever happens.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from models import events
from models.assist import Assist, AssistHelp, AssistPolicy, AssistQuota
from models.db import db, lock_rows, utcnow
from models.errors import Conflict, Forbidden, NotFound, Unauthenticated
from models.live import LiveSession, LiveState
from models.orders import Order
from models.users import User


@dataclass(frozen=True)
class Helped:
    helpers: int
    helpers_needed: int
    unlocked_until: dt.datetime | None


def has_paid(user_id: int) -> bool:
    """Whether the user ever paid an order (refunded ones included): "not a new user"."""
    return Order.select(Order.id).where((Order.user == user_id) & Order.paid_at.is_null(False)).exists()


def _same_person(starter_id: int, helper_id: int) -> bool:
    """Whether the helper is another account of the starter (the same WeChat unionid)."""
    unionids = dict(User.select(User.id, User.unionid).where(User.id.in_([starter_id, helper_id])).tuples())
    if helper_id not in unionids:
        raise Unauthenticated("unknown user; log in again")
    starter = unionids.get(starter_id)
    return bool(starter) and unionids[helper_id] == starter


def help_assist(helper_id: int, token: str, *, ip: str, policy: AssistPolicy,
                now: dt.datetime | None = None) -> Helped:
    """Count `helper_id` once for the assist behind `token` (see the module's rule)."""
    now = now or utcnow()
    with db.atomic():
        assist = lock_rows(Assist.select().where((Assist.token == token) & Assist.closed_at.is_null())).first() \
            if isinstance(token, str) and len(token) <= 32 else None
        if assist is None:
            raise NotFound("no such assist", code="assist_not_found")
        if assist.user_id == helper_id:
            raise Forbidden("you cannot help your own assist; share it with friends", code="self_assist")
        if _same_person(assist.user_id, helper_id):
            raise Forbidden("another account of the same person cannot help", code="same_person")
        state = LiveSession.select(LiveSession.state).where(LiveSession.id == assist.session_id).scalar()
        if state != LiveState.LIVE:
            raise Conflict("helping counts when you enter the live room; the session is not live",
                           code="session_not_live")
        if AssistHelp.select().where((AssistHelp.assist == assist.id) & (AssistHelp.helper == helper_id)).exists():
            raise Conflict("you already helped this assist", code="already_helped")
        if assist.unlocked_at is not None:
            raise Conflict("this assist already has all its helpers", code="assist_complete")
        if assist.new_users_only and has_paid(helper_id):
            raise Forbidden("this offer counts only friends who have never bought", code="not_new_user")
        session_id = assist.session_id
        AssistQuota.insert(session_id=session_id, helper_id=helper_id, used=0).on_conflict_ignore().execute()
        taken = AssistQuota.update(used=AssistQuota.used + 1).where(
            (AssistQuota.session_id == session_id) & (AssistQuota.helper_id == helper_id)
            & (AssistQuota.used < policy.max_helps_per_session)).execute()
        if taken != 1:  # raising here rolls the quota row back too
            raise Conflict(f"you can help at most {policy.max_helps_per_session} assists per session",
                           code="help_limit_reached")
        try:
            with db.atomic():
                AssistHelp.create(assist=assist.id, helper=helper_id, session_id=session_id,
                                  ip=(ip or "")[:64], created_at=now)
        except pw.IntegrityError:
            raise Conflict("you already helped this assist", code="already_helped") from None
        helpers = assist.helpers + 1
        changes: dict = {Assist.helpers: helpers}
        until = None
        if helpers >= assist.helpers_needed:
            until = now + dt.timedelta(seconds=assist.window_s or policy.window_s)
            changes.update({Assist.unlocked_at: now, Assist.unlocked_until: until})
            events.record("assist.unlocked", f"assist:{assist.id}", f"user:{helper_id}",
                          session=session_id, sku=assist.sku_id, helpers=helpers)
        Assist.update(changes).where(Assist.id == assist.id).execute()
    return Helped(helpers=helpers, helpers_needed=assist.helpers_needed, unlocked_until=until)
