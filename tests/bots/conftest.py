"""Helpers for the conversation-core tests: updates go in through `bots.core.handle` exactly as
an adapter sends them, replies come out; money is made by real sales and settlement or by
ledger entries."""

from __future__ import annotations

import datetime as dt
import itertools

from bots.core import handle
from bots.types import Incoming, Member, Reply
from models import ledger, network, orders, payments, settlement
from models.db import db, utcnow
from models.network import Creator
from models.orders import OrderRequest
from models.users import User
from tests.conftest import buyer

_tx = itertools.count(1)


def say(text: str = "", *, who: str = "ann", name: str | None = None, chat: str | None = None,
        platform: str = "console", callback: str | None = None, payload: str | None = None,
        joined: tuple[Member, ...] = ()) -> list[Reply]:
    """One update from `who`: privately, or in group `chat`."""
    kind = "group" if chat else "private"
    sender = Member(who, name if name is not None else who)
    return handle(Incoming(platform, chat or who, kind, sender, text=text, callback=callback,
                           start_payload=payload, joined=joined))


def text_of(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


def press(replies: list[Reply], label: str, **kw: object) -> list[Reply]:
    """Press the button whose text contains `label` in the replies."""
    for reply in replies:
        for row in reply.buttons:
            for button in row:
                if label in button.text and button.data:
                    return say(callback=button.data, **kw)  # type: ignore[arg-type]
    raise AssertionError(f"no button {label!r} in {replies}")


def button_data(replies: list[Reply], label: str) -> str:
    for reply in replies:
        for row in reply.buttons:
            for button in row:
                if label in button.text and button.data:
                    return button.data
    raise AssertionError(f"no button {label!r}")


def user_of(who: str, platform: str = "console") -> User:
    with db.connection_context():
        return User.get(User.openid == f"{platform}:{who}")


def creator_of(who: str, platform: str = "console") -> Creator:
    with db.connection_context():
        return Creator.get(Creator.user == user_of(who, platform).id)


def join(who: str, *, rank: int = 0) -> Creator:
    """`who` joins through the chat (/join); optionally given a star level."""
    say("/join", who=who)
    creator = creator_of(who)
    if rank:
        with db.connection_context():
            Creator.update(rank=rank).where(Creator.id == creator.id).execute()
            creator = Creator.get_by_id(creator.id)
    return creator


def give_available(creator: Creator, fen: int) -> None:
    """Money the platform owes the creator, available to withdraw (a released commission)."""
    with db.connection_context(), db.atomic():
        ledger.post(f"test-earn:{creator.id}:{next(_tx)}", "release", [
            ledger.Leg(ledger.COMMISSION_EXPENSE, fen),
            ledger.Leg(ledger.creator_account(creator.id, ledger.AVAILABLE), -fen)])


def sell(rt, sku_code: str, ref: str | None, user: User | None = None, openid: str = "shopper") -> int:  # noqa: ANN001
    """A buyer orders through `ref` and pays (the notification path)."""
    with db.connection_context():
        order, _ = orders.place_order(user or buyer(openid), OrderRequest(sku=sku_code, quantity=1, ref=ref),
                                      rt.policy, client_ip="127.0.0.1")
        payments.confirm_payment(order.no, f"tx-chat-{next(_tx)}", order.amount_fen, source="test")
        return order.id


def settle_and_release(rt) -> None:  # noqa: ANN001
    later = utcnow() + dt.timedelta(days=rt.payout.refund_window_days, seconds=1)
    with db.connection_context():
        settlement.settle(rt.payout)
        settlement.release_due(rt.payout, now=later)


def bind(child: Creator, parent: Creator) -> None:
    with db.connection_context():
        network.bind(child, parent.code, "typed")
