"""Group-buy services (models/groupbuy.py and its modules) through the real interfaces: orders
placed through POST /orders, paid through the fake WeChat Pay's signed notifications, the
delivery drain and the group-buy jobs run by the real RQ burst worker."""

from __future__ import annotations

import datetime as dt

import pytest

from models import groupbuy, ledger, orders
from models.catalog import Sku
from models.db import db, utcnow
from models.errors import DomainError
from models.events import Event
from models.groupbuy import GroupActivity, GroupMember, GroupTeam, MemberState, TeamState
from models.orders import Order
from models.payments import Refund
from models.settlement import Commission
from models.users import User
from tests.factories import (
    api_buy,
    api_group,
    buyer,
    chain,
    expire_team,
    group_sale,
    member_states,
    status,
    team_row,
    vouchers,
)


def counts() -> tuple[int, int, int]:
    with db.connection_context():
        return Order.select().count(), GroupTeam.select().count(), GroupMember.select().count()


def refunds_of(fake_pay, order: dict) -> list:  # noqa: ANN001
    return [r for r in fake_pay.refunds if r.out_trade_no == order["no"]]


# ---- activities ----------------------------------------------------------------------------------


def test_an_activity_is_validated_whole_and_nothing_is_written_on_a_bad_one(rt, shop):
    # given a SKU at 19.90
    sku = shop.card_sku(keys=1, price=1990)
    now = utcnow()
    good = dict(sku_code=sku.code, title="三人团", size=3, window_s=3600, group_price_fen=990,
                starts_at=now, ends_at=now + dt.timedelta(days=1))
    bad = [dict(size=1), dict(size=51), dict(window_s=59), dict(window_s=7 * 86400 + 1),
           dict(group_price_fen=0), dict(group_price_fen=1991), dict(per_user_limit=0),
           dict(ends_at=now), dict(max_teams=0), dict(stock=2), dict(title=""),
           dict(sku_code="NO-SUCH-SKU")]
    with db.connection_context():
        # when each broken spec is created, then it is refused with a 4xx error and nothing is written
        for change in bad:
            with pytest.raises(DomainError) as exc:
                groupbuy.create_activity(groupbuy.ActivitySpec(**{**good, **change}), actor="test")
            assert exc.value.status in (400, 404), change
        assert GroupActivity.select().count() == 0
        # and the good one is created with its event
        made = groupbuy.create_activity(groupbuy.ActivitySpec(**good), actor="operator:1")
        assert made.size == 3 and not made.virtual_complete
        assert Event.select().where(Event.topic == "group.activity_created").count() == 1


# ---- the life of a team --------------------------------------------------------------------------


def test_a_team_fills_and_every_member_is_delivered_in_one_step_with_commission_only_after(
        client, login, fake_pay, run_jobs, shop, rt):
    # given an activity of 3 at 15.00 (retail 19.90, cost 9.95), a leader who starts a team
    # through a creator's link and pays
    seller = chain(1)[0]
    sku, activity = group_sale(shop, size=3, price=1500)
    with db.connection_context():
        Sku.update(commission_bp=1000).where(Sku.id == sku.id).execute()  # 10% to the seller
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay, ref=seller.code)
    run_jobs()
    team = leader["group_team"]
    assert leader["amount_fen"] == 1500 and team is not None
    # and a first member who joins and pays
    first = api_group(client, login("m1"), sku, team=team, fake_pay=fake_pay, ref=seller.code)
    run_jobs()
    # then nothing is delivered before the team fills, and settlement pays no commission
    assert status(leader["id"]) == status(first["id"]) == "paid"
    assert vouchers(leader["id"]) == [] and vouchers(first["id"]) == []
    assert team_row(team).paid_count == 2 and team_row(team).state == TeamState.OPEN
    from tasks import settlement as settle_jobs

    assert settle_jobs.settle_all()["orders"] == 0
    with db.connection_context():
        assert Commission.select().count() == 0
    # when the last member joins and pays
    last = api_group(client, login("m2"), sku, team=team, fake_pay=fake_pay)
    run_jobs()
    # then the team succeeded and every member was delivered in the same drain
    assert team_row(team).state == TeamState.SUCCEEDED
    for order in (leader, first, last):
        assert status(order["id"]) == "delivered" and len(vouchers(order["id"])) == 1
    assert set(member_states(team).values()) == {MemberState.DELIVERED}
    with db.connection_context():
        assert Event.select().where(Event.topic == "group.succeeded").count() == 1
        assert not Order.select().where(Order.group_hold).exists()
        assert ledger.unbalanced_transactions() == []
    # and settlement now pays the seller's commission on the members who came through the link
    assert settle_jobs.settle_all()["orders"] == 3
    with db.connection_context():
        assert Commission.select().count() == 2  # the two members who bought through the link


def test_the_page_shows_progress_and_masked_members(client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 3 with a paid leader and an unpaid joiner
    sku, activity = group_sale(shop, size=3)
    with db.connection_context():
        User.update(nickname="张三丰").where(User.id == buyer("lead-page").id).execute()
    leader = api_group(client, login("lead-page"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    api_group(client, login("joiner"), sku, team=leader["group_team"])
    # when the page is read
    with db.connection_context():
        page = groupbuy.team_page(leader["group_team"], viewer_id=buyer("joiner").id)
    # then it says 1 of 3 paid, 2 missing; the leader's name is masked; the viewer is a member
    assert page.progress == "1/3，还差2人"
    assert page.members[0].name == "张**" and page.members[0].leader and page.members[0].paid
    assert page.viewer_is_member and page.seats_free == 1 and page.state == "open"


def test_a_refund_before_success_frees_the_place_and_someone_else_fills_it(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 2 whose leader paid
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    # when the leader's order is refunded before the team filled
    from tasks import groupbuy as jobs

    assert jobs.refund_members([leader["id"]]) == {"refunded": 1, "retry": 0, "skipped": 0}
    # then the seat and the paid place are free again
    row = team_row(team)
    assert (row.seats_taken, row.paid_count, row.state) == (0, 0, TeamState.OPEN)
    assert member_states(team)[leader["id"]] == MemberState.REFUNDED
    # and two others fill it: the team succeeds with them and both are delivered
    a = api_group(client, login("a"), sku, team=team, fake_pay=fake_pay)
    b = api_group(client, login("b"), sku, team=team, fake_pay=fake_pay)
    run_jobs()
    assert team_row(team).state == TeamState.SUCCEEDED
    assert status(a["id"]) == status(b["id"]) == "delivered"
    assert len(refunds_of(fake_pay, leader)) == 1


def test_a_refund_after_success_follows_the_normal_path(client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 2 that succeeded
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    other = api_group(client, login("o"), sku, team=leader["group_team"], fake_pay=fake_pay)
    run_jobs()
    # when one member is refunded
    from models import payments

    with db.connection_context():
        payments.refund_order(other["id"], rt.gateway, actor="operator:test", reason="asked")
    # then the member is refunded and the team stays succeeded with its counts
    row = team_row(leader["group_team"])
    assert row.state == TeamState.SUCCEEDED and row.paid_count == 2
    assert member_states(row.id)[other["id"]] == MemberState.REFUNDED
    assert status(leader["id"]) == "delivered"


# ---- expiry ---------------------------------------------------------------------------------------


def test_an_expired_team_refunds_its_paid_member_exactly_once_and_cancels_the_unpaid_one(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 3: the leader paid, a joiner did not
    sku, activity = group_sale(shop, size=3, keys=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    slow = api_group(client, login("slow"), sku, team=team)
    # when its window passes and the sweeper runs (twice)
    expire_team(team)
    from tasks import groupbuy as jobs

    first = jobs.close_expired()
    run_jobs()
    second = jobs.close_expired()
    run_jobs()
    # then the team failed once, the paid member was refunded once through WeChat Pay
    assert first["failed"] == 1 and second["closed"] == 0
    assert team_row(team).state == TeamState.FAILED
    assert len(refunds_of(fake_pay, leader)) == 1 and refunds_of(fake_pay, leader)[0].refund_fee == 990
    assert status(leader["id"]) == "refunded" and vouchers(leader["id"]) == []
    # and the unpaid order was cancelled, its key back on the shelf
    assert status(slow["id"]) == "cancelled"
    assert member_states(team) == {leader["id"]: MemberState.REFUNDED, slow["id"]: MemberState.LEFT}
    with db.connection_context():
        assert Refund.get(Refund.order == leader["id"]).state == "succeeded"
        assert ledger.unbalanced_transactions() == [] and ledger.balance(ledger.SALES) == 0
        assert Event.select().where(Event.topic == "group.failed").count() == 1
    # and both keys are back on the shelf: two later buyers get them
    later = [api_buy(client, fake_pay, login(f"later{i}"), sku) for i in range(2)]
    run_jobs()
    assert [status(o["id"]) for o in later] == ["delivered", "delivered"]


def test_virtual_completion_delivers_the_paid_members_and_shows_in_the_ledger(
        client, login, fake_pay, run_jobs, shop, rt):
    # given an activity that completes virtually, and a team of 3 with one paid member
    sku, activity = group_sale(shop, size=3, virtual_complete=True)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    # when it expires and the team's own close job runs
    expire_team(team)
    from tasks import groupbuy as jobs

    assert jobs.close_team(team) == TeamState.SUCCEEDED
    run_jobs()
    # then it succeeded with 2 virtual seats, the leader was delivered, the ledger says so
    row = team_row(team)
    assert (row.state, row.virtual_count) == (TeamState.SUCCEEDED, 2)
    assert status(leader["id"]) == "delivered"
    with db.connection_context():
        txn = ledger.LedgerTransaction.get(ledger.LedgerTransaction.key == f"group-virtual:{team}")
        assert "2 of 3 seats filled virtually" in txn.memo
        assert ledger.unbalanced_transactions() == []
        assert groupbuy.team_page(team, viewer_id=None).progress == "3/3，已成团"


def test_an_expired_team_with_nobody_paid_fails_even_with_virtual_completion(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a virtual-completion activity and a team whose leader never paid
    sku, activity = group_sale(shop, size=3, virtual_complete=True)
    leader = api_group(client, login("lead"), sku, activity=activity)
    # when it expires and closes
    expire_team(leader["group_team"])
    with db.connection_context():
        closed = groupbuy.close_team(leader["group_team"])
    # then it failed with nothing to refund and the leader's order cancelled
    assert (closed.state, closed.refund, closed.cancelled) == (TeamState.FAILED, [], [leader["id"]])


def test_a_late_payment_for_a_failed_team_is_refunded_and_never_delivered(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 2 that failed at expiry with an unpaid member, whose order was cancelled
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity)
    team = leader["group_team"]
    expire_team(team)
    from tasks import groupbuy as jobs

    jobs.close_expired()
    assert status(leader["id"]) == "cancelled"
    # when WeChat Pay still notifies the leader's payment
    assert fake_pay.notify_acknowledged(fake_pay.pay(leader["no"]))
    run_jobs()
    # then the payment is refunded exactly once and nothing is delivered
    assert len(refunds_of(fake_pay, leader)) == 1
    assert vouchers(leader["id"]) == []
    assert status(leader["id"]) in ("refunded", "cancelled")
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []


def test_a_payment_made_before_expiry_but_advanced_after_it_counts_as_paid(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 2 whose leader paid, and a joiner whose payment is confirmed but not yet advanced
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    joiner = api_group(client, login("j"), sku, team=leader["group_team"], fake_pay=fake_pay)
    # when the team's window passes before the drain ran (its signal lost), and the sweeper closes it first
    from tasks import queues

    rt.queue.empty()
    rt.redis.delete(queues.DELIVERY_LIST, queues.DELIVERY_FLAG)
    expire_team(leader["group_team"], ago_s=0)
    from tasks import groupbuy as jobs

    jobs.close_expired()
    run_jobs()
    # then the joiner's payment (made in time) completed the team: both delivered, nobody refunded
    assert team_row(leader["group_team"]).state == TeamState.SUCCEEDED
    assert status(leader["id"]) == status(joiner["id"]) == "delivered"
    assert not refunds_of(fake_pay, leader) and not refunds_of(fake_pay, joiner)


def test_an_expired_unpaid_member_frees_its_seat_and_a_late_payment_retakes_a_free_one(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team of 2 whose leader paid and a joiner whose unpaid order expired (seat freed)
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    team = leader["group_team"]
    joiner = api_group(client, login("j"), sku, team=team)
    with db.connection_context():
        Order.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(Order.id == joiner["id"]).execute()
        orders.expire_due()
    assert member_states(team)[joiner["id"]] == MemberState.LEFT and team_row(team).seats_taken == 1
    # when the joiner's payment arrives late
    assert fake_pay.notify_acknowledged(fake_pay.pay(joiner["no"]))
    run_jobs()
    # then it retook the free seat: the team succeeded, both delivered
    assert team_row(team).state == TeamState.SUCCEEDED
    assert status(joiner["id"]) == "delivered" and status(leader["id"]) == "delivered"


def test_a_held_order_is_never_delivered_even_when_handed_to_delivery_or_the_sweep(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a paid leader waiting for the team, next to an ordinary paid order
    sku, activity = group_sale(shop, size=2)
    leader = api_group(client, login("lead"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    # when delivery is handed the held order directly, and the undelivered sweep runs
    from models import delivery
    from tasks import maintenance

    with db.connection_context():
        assert delivery.fulfil_orders([leader["id"]]) == {leader["id"]: delivery.Fulfilment.NOOP}
    assert maintenance.sweep_undelivered(older_than_s=0) == 0
    run_jobs()
    # then it is still paid and undelivered, waiting for its team
    assert status(leader["id"]) == "paid" and vouchers(leader["id"]) == []
    assert member_states(leader["group_team"])[leader["id"]] == MemberState.PAID
