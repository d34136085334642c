"""Group-buy invariants, property-tested on the database through the real services and jobs:
random sequences of starts, joins, payments (in time and late), refunds, unpaid orders expiring
and teams expiring, with WeChat Pay refusing refunds now and then. After every step: no team
has more than N paid members, nothing is delivered before its team succeeded, and the ledger
balances. At the end (time passed, WeChat Pay answering again, the periodic jobs run): every
member of a failed team who paid was refunded exactly once, nobody was refunded twice, and the
sales account holds exactly the orders still sold.

The gateway is the product's sandbox, counting the refunds it confirms and refusing some."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import checkout, ledger, orders, payments
from models.db import db, utcnow
from models.errors import DomainError
from models.groupbuy import GroupMember, GroupTeam
from models.orders import Order, OrderRequest
from models.payments import GatewayError, Refund
from qianxing.gateways.payments import SandboxGateway
from tasks import groupbuy as jobs
from tasks import maintenance
from tests.factories import POLICY, buyer, expire_team, group_sale

SIZE = 3
PAID_STATES = ("paid", "deliverable", "delivered")


class CountingSandbox(SandboxGateway):
    """The sandbox gateway, refusing a refund whenever the drawn pattern says so, and counting
    the refunds it confirmed per order number."""

    def __init__(self, fails: list[bool]) -> None:
        super().__init__("wx", "mch", "key", "http://127.0.0.1:9/notify")
        self.fails, self.calls, self.confirmed = fails, 0, {}

    def refund(self, order_no: str, refund_no: str, total_fee: int, refund_fee: int) -> str:
        self.calls += 1
        if self.fails and self.fails[self.calls % len(self.fails)]:
            raise GatewayError("sandbox refusing refunds for a while")
        self.confirmed[order_no] = self.confirmed.get(order_no, 0) + 1
        return super().refund(order_no, refund_no, total_fee, refund_fee)


op = st.one_of(
    st.tuples(st.just("start"), st.integers(0, 5)),
    st.tuples(st.just("join"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("pay"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 20)),
    st.tuples(st.just("expire_order"), st.integers(0, 20)),
    st.tuples(st.just("expire_team"), st.integers(0, 3)),
)


def invariants() -> None:
    with db.connection_context():
        for team in GroupTeam.select():
            paid = GroupMember.select().where((GroupMember.team == team.id) & GroupMember.state.in_(PAID_STATES))
            assert paid.count() <= team.size and team.paid_count <= team.size and team.seats_taken <= team.size
        early = (Order.select().join(GroupMember, on=(GroupMember.order_id == Order.id))
                 .join(GroupTeam, on=(GroupTeam.id == GroupMember.team))
                 .where((Order.status == "delivered") & (GroupTeam.state != "succeeded")))
        assert not early.exists(), "delivered before its team succeeded"
        assert ledger.unbalanced_transactions() == []


@h_settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(op, min_size=4, max_size=16), fails=st.lists(st.booleans(), max_size=4),
       virtual=st.booleans())
def test_random_group_histories_keep_teams_refunds_and_books_exact(rt, shop, run_jobs, monkeypatch, ops, fails,
                                                                    virtual):
    from tests.conftest import _truncate

    _truncate()
    rt.redis.flushdb()
    gateway = CountingSandbox(fails)
    monkeypatch.setattr(rt, "gateway", gateway)
    sku, activity = group_sale(shop, size=SIZE, keys=40, virtual_complete=virtual, per_user_limit=2)
    placed: list[Order] = []
    teams: list[int] = []
    # given a random history
    for step in ops:
        kind = step[0]
        with db.connection_context():
            if kind in ("start", "join"):
                group = ("start", activity) if kind == "start" else ("join", teams[step[2] % len(teams)]) \
                    if teams else ("start", activity)
                try:
                    order = checkout.place(buyer(f"shopper-{step[1]}"), OrderRequest(sku.code, 1, group=group),
                                           POLICY, client_ip="10.2.0.1")[0]
                except DomainError:
                    continue  # a refusal (full, limit, expired, closed): nothing written, checked elsewhere
                placed.append(order)
                team = GroupMember.get(GroupMember.order_id == order.id).team_id
                if team not in teams:
                    teams.append(team)
            elif kind == "pay" and placed:
                order = placed[step[1] % len(placed)]
                try:
                    order_id, outcome = payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen,
                                                                 source="test")
                except DomainError:
                    continue
                maintenance.dispatch_payment(order_id, outcome)
            elif kind == "refund" and placed:
                jobs.refund_members([placed[step[1] % len(placed)].id])
            elif kind == "expire_order" and placed:
                Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
                    (Order.id == placed[step[1] % len(placed)].id) & (Order.status == "pending")).execute()
                orders.expire_due()
        if kind == "expire_team" and teams:
            expire_team(teams[step[1] % len(teams)])
            jobs.close_expired()
        run_jobs()
        # then after every step
        invariants()

    # when every team's time is up, time passes, WeChat Pay answers again and the periodic jobs run
    gateway.fails = []
    for team in teams:
        expire_team(team)
    for _ in range(4):
        with db.connection_context():
            past = utcnow() - dt.timedelta(hours=2)
            Order.update(paid_at=past).where((Order.status == "paid") & Order.group_hold).execute()
            GroupMember.update(updated_at=past).execute()
            Refund.update(next_attempt_at=past).where(Refund.state != "succeeded").execute()
        jobs.close_expired()
        run_jobs()
        jobs.retry_refunds()
        run_jobs()
    invariants()
    # then every paid member of a failed team was refunded, and nobody twice
    with db.connection_context():
        members = list(GroupMember.select(GroupMember, GroupTeam).join(GroupTeam))
        by_order = {o.id: o for o in Order.select().where(Order.id.in_([m.order_id for m in members]))}
        for m in members:
            order = by_order[m.order_id]
            if m.team.state == "failed" and order.paid_at is not None:
                assert order.status == "refunded", (m.state, order.status)
                assert gateway.confirmed.get(order.no) == 1
            assert gateway.confirmed.get(order.no, 0) <= 1
            assert m.team.state != "open"
            assert not (order.status == "paid" and order.group_hold), "a paid member left waiting"
        sold = sum(o.amount_fen for o in by_order.values() if o.status in ("paid", "delivered"))
        assert ledger.balance(ledger.SALES) == -sold
        assert ledger.unbalanced_transactions() == []
