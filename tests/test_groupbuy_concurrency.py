"""Group-buy exactness under concurrency, on whichever database the suite runs on (SQLite file or
PostgreSQL): N + k shoppers join one team at the same moment and exactly N seats are taken (the
others are refused before paying, and start teams of their own); then every member's payment is
confirmed and handed to the delivery drain at the same moment, and the team succeeds exactly once
with exactly N paid members, all delivered. Real services in threads with their own connections."""

from __future__ import annotations

from models import checkout, payments
from models.db import db
from models.errors import Conflict
from models.events import Event
from models.groupbuy import GroupMember, MemberState
from models.orders import Order, OrderRequest
from tasks import delivery as delivery_jobs
from tests.concurrently import at_once
from tests.factories import POLICY, buyer, group_sale, team_row, vouchers

SIZE, EXTRA = 6, 6


def place(sku_code: str, group: tuple[str, int], openid: str) -> Order | str:
    """One shopper's group order, or the code it was refused with."""
    with db.connection_context():
        try:
            return checkout.place(buyer(openid), OrderRequest(sku_code, 1, group=group), POLICY,
                                  client_ip="10.1.0.1")[0]
        except Conflict as exc:
            return exc.code


def test_n_plus_k_joins_take_exactly_n_seats_and_n_payments_make_one_success(rt, shop):
    # given a team of 6 whose leader ordered, and 10 other shoppers
    sku, activity = group_sale(shop, size=SIZE, keys=40)
    leader = place(sku.code, ("start", activity), "leader")
    assert isinstance(leader, Order)
    with db.connection_context():
        team = GroupMember.get(GroupMember.order_id == leader.id).team_id
    names = iter(f"joiner-{i}" for i in range(SIZE - 1 + EXTRA))
    # when 5 + 6 of them join at the same moment
    joined = at_once(lambda: place(sku.code, ("join", team), next(names)), SIZE - 1 + EXTRA)
    # then exactly 5 took a seat and 6 were refused as full, before paying anything
    members = [o for o in joined if isinstance(o, Order)]
    assert len(members) == SIZE - 1 and sorted(o for o in joined if isinstance(o, str)) == ["group_full"] * EXTRA
    assert team_row(team).seats_taken == SIZE
    with db.connection_context():
        assert GroupMember.select().where(GroupMember.team == team).count() == SIZE
    # and the refused ones can start teams of their own
    assert isinstance(place(sku.code, ("start", activity), "joiner-late"), Order)

    # when every member's payment is confirmed and handed to delivery at the same moment
    everyone = iter([leader, *members])

    def pay_and_deliver() -> int:
        order = next(everyone)
        with db.connection_context():
            order_id, _ = payments.confirm_payment(order.no, f"tx-{order.no}", order.amount_fen, source="test")
        delivery_jobs.deliver_orders([order_id])
        return order_id

    paid = at_once(pay_and_deliver, SIZE)
    # then the team has exactly 6 paid members, succeeded once, and all were delivered
    row = team_row(team)
    assert (row.state, row.paid_count, row.seats_taken) == ("succeeded", SIZE, SIZE)
    with db.connection_context():
        assert Event.select().where((Event.topic == "group.succeeded")
                                    & (Event.subject == f"group_team:{team}")).count() == 1
        states = [m.state for m in GroupMember.select().where(GroupMember.team == team)]
        assert states == [MemberState.DELIVERED] * SIZE
        assert Order.select().where(Order.id.in_(paid) & (Order.status == "delivered")).count() == SIZE
    assert all(len(vouchers(i)) == 1 for i in paid)
