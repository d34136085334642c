"""The confirmation step of a withdrawal, in Redis.

`/withdraw 100` shows the amount, fee and a confirm/cancel pair whose callbacks carry a
one-time token stored with the offer (`SET NX EX`, WITHDRAW_CONFIRM_TTL_S); only the confirm
press calls `models.withdrawals.request_withdrawal`, with the token as the request key, so a
double press is one withdrawal. A second key decides between confirm and cancel atomically
(`SET NX`): whichever press comes first wins, the other is told so.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from redis import Redis

from bots.commands.replies import PREFIX

WITHDRAW_CONFIRM_TTL_S = 300


def offer_key(token: str) -> str:
    return f"{PREFIX}:wd:{token}"


def decision_key(token: str) -> str:
    return f"{PREFIX}:wd:{token}:decided"


def store_offer(redis: Redis, offer: dict[str, Any]) -> str:
    """Keep an offer for WITHDRAW_CONFIRM_TTL_S; its one-time token."""
    token = secrets.token_urlsafe(12)
    if not redis.set(offer_key(token), json.dumps(offer), nx=True, ex=WITHDRAW_CONFIRM_TTL_S):
        raise RuntimeError("withdrawal token collision")  # 96 random bits: never in practice
    return token


def load_offer(redis: Redis, token: str) -> dict[str, Any] | None:
    raw = redis.get(offer_key(token))
    return None if raw is None else json.loads(raw)


def decide(redis: Redis, token: str, decision: str) -> str:
    """Record `decision` ("ok" or "no") unless one was recorded first; the decision that won."""
    redis.set(decision_key(token), decision, nx=True, ex=WITHDRAW_CONFIRM_TTL_S * 2)
    won = redis.get(decision_key(token))
    return won.decode() if isinstance(won, bytes) else str(won)
