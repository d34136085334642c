"""Group-buy jobs (tasks/groupbuy.py) on the real RQ burst worker: closing expired teams,
refunding their members exactly once even when a worker dies in between, and refunds that
WeChat Pay refuses retried with backoff until it confirms."""

from __future__ import annotations

import datetime as dt

from models import groupbuy, ledger
from models.db import db, utcnow
from models.groupbuy import GroupMember, MemberState
from models.payments import Refund
from tasks import groupbuy as jobs
from tests.factories import api_group, expire_team, group_sale, member_states, status, team_row


def failed_team(client, login, fake_pay, run_jobs, shop, paid: int = 3) -> tuple[int, list[dict]]:  # noqa: ANN001
    """A team of 4 with `paid` paid members, expired (not closed yet)."""
    sku, activity = group_sale(shop, size=4)
    first = api_group(client, login("m0"), sku, activity=activity, fake_pay=fake_pay)
    members = [first] + [api_group(client, login(f"m{i}"), sku, team=first["group_team"], fake_pay=fake_pay)
                         for i in range(1, paid)]
    run_jobs()
    expire_team(first["group_team"])
    return first["group_team"], members


def refunds_per_order(fake_pay, members: list[dict]) -> list[int]:  # noqa: ANN001
    return [sum(1 for r in fake_pay.refunds if r.out_trade_no == m["no"]) for m in members]


def test_a_worker_killed_between_closing_and_refunding_refunds_everyone_exactly_once_on_rerun(
        client, login, fake_pay, run_jobs, shop, rt):
    # given an expired team of 4 with 3 paid members
    team, members = failed_team(client, login, fake_pay, run_jobs, shop)
    # when the close commits and the worker dies before any refund job was queued (the close
    # transaction alone), then dies again after refunding one member, with the answer of a
    # second refund lost after WeChat Pay moved the money
    with db.connection_context():
        closed = groupbuy.close_team(team)
    assert closed.changed and closed.refund == sorted(m["id"] for m in members)
    jobs.refund_members([members[0]["id"]])
    fake_pay.fail_next(1, err_code="SYSTEMERROR", endpoint="refund", after_processing=True)
    assert jobs.refund_members([members[1]["id"]])["retry"] == 1
    # and the team's close job runs again on the real worker (the delayed job, re-delivered)
    rt.queue.enqueue("tasks.groupbuy.close_team", team)
    run_jobs()
    with db.connection_context():  # the lost answer's retry is due on its backoff: let the time pass
        Refund.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(Refund.state != "succeeded").execute()
    rt.queue.enqueue("tasks.groupbuy.retry_refunds")
    run_jobs()
    # then every member was refunded exactly once, at WeChat Pay and in the books
    assert refunds_per_order(fake_pay, members) == [1, 1, 1]
    assert [status(m["id"]) for m in members] == ["refunded"] * 3
    assert set(member_states(team).values()) == {MemberState.REFUNDED}
    with db.connection_context():
        assert ledger.unbalanced_transactions() == [] and ledger.balance(ledger.SALES) == 0
        assert ledger.LedgerTransaction.select().where(ledger.LedgerTransaction.kind == "refund").count() == 3


def test_members_waiting_for_a_refund_nobody_queued_are_found_by_the_periodic_retry(
        client, login, fake_pay, run_jobs, shop, rt):
    # given a team closed by a run that died before queueing its refunds, a minute ago
    team, members = failed_team(client, login, fake_pay, run_jobs, shop, paid=2)
    with db.connection_context():
        groupbuy.close_team(team)
        GroupMember.update(updated_at=utcnow() - dt.timedelta(minutes=2)).where(GroupMember.team == team).execute()
    # when the periodic retry runs
    counts = jobs.retry_refunds()
    # then both were refunded once
    assert counts == {"refunded": 2, "retry": 0, "skipped": 0}
    assert refunds_per_order(fake_pay, members) == [1, 1]


def test_refunds_wechat_pay_refuses_back_off_show_in_the_admin_list_then_succeed(
        client, login, fake_pay, run_jobs, shop, rt):
    # given an expired team with one paid member, and WeChat Pay refusing the next 3 refunds
    team, (member,) = failed_team(client, login, fake_pay, run_jobs, shop, paid=1)
    fake_pay.fail_next(3, err_code="SYSTEMERROR", endpoint="refund")
    # when the sweeper closes it and its refund job runs
    assert jobs.close_expired()["failed"] == 1
    run_jobs()
    # then the first try failed: 1 attempt, the next one 30 s later (GROUP_REFUND_BACKOFF_S)
    with db.connection_context():
        refund = Refund.get(Refund.order == member["id"])
    assert (refund.state, refund.attempts) == ("failed", 1)
    assert dt.timedelta(seconds=25) < refund.next_attempt_at - utcnow() <= dt.timedelta(seconds=30)
    # and a retry before it is due does nothing
    assert jobs.retry_refunds() == {"refunded": 0, "retry": 0, "skipped": 0}
    # when time passes twice more, each retry fails and backs off further (120 s, then 600 s)
    waits = []
    for _ in range(2):
        with db.connection_context():
            Refund.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(
                Refund.order == member["id"]).execute()
        assert jobs.retry_refunds()["retry"] == 1
        with db.connection_context():
            refund = Refund.get(Refund.order == member["id"])
        waits.append(round((refund.next_attempt_at - utcnow()).total_seconds(), -1))
    assert waits == [120, 600] and refund.attempts == 3
    # then the admin lists it as failing
    with db.connection_context():
        failing = groupbuy.failing_refunds()
    assert [(f.order_id, f.attempts, f.team_id) for f in failing] == [(member["id"], 3, team)]
    # and when WeChat Pay answers again, the next due retry refunds it once and the list empties
    with db.connection_context():
        Refund.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(Refund.order == member["id"]).execute()
    assert jobs.retry_refunds()["refunded"] == 1
    assert status(member["id"]) == "refunded" and refunds_per_order(fake_pay, [member]) == [1]
    with db.connection_context():
        assert groupbuy.failing_refunds() == []
    assert team_row(team).state == "failed"


def test_the_sweeper_closes_every_expired_team_chunk_by_chunk(client, login, fake_pay, run_jobs, shop, rt,
                                                                      monkeypatch):
    # given three expired teams, one of them full of paid members, and a chunk of 2
    monkeypatch.setattr(rt.settings, "GROUP_CLOSE_CHUNK", 2)
    teams = [failed_team(client, login, fake_pay, run_jobs, shop, paid=1)[0] for _ in range(3)]
    # when the sweeper runs
    counts = jobs.close_expired()
    run_jobs()
    # then all three closed and their members were refunded
    assert counts["closed"] == 3 and counts["failed"] == 3
    assert [team_row(t).state for t in teams] == ["failed"] * 3
    assert len(fake_pay.refunds) >= 3


def test_a_team_that_cannot_advance_is_set_aside_and_the_rest_of_the_batch_is_delivered(
        client, login, fake_pay, run_jobs, shop, rt):
    # given two teams of 2 with paid leaders, one of them broken (its paid count already at its size)
    sku, activity = group_sale(shop, size=2, per_user_limit=2)
    good = api_group(client, login("good"), sku, activity=activity, fake_pay=fake_pay)
    bad = api_group(client, login("bad"), sku, activity=activity, fake_pay=fake_pay)
    run_jobs()
    with db.connection_context():
        groupbuy.GroupTeam.update(paid_count=2).where(groupbuy.GroupTeam.id == bad["group_team"]).execute()
    # when both second members pay and one drain batch takes both payments
    good2 = api_group(client, login("good2"), sku, team=good["group_team"], fake_pay=fake_pay)
    bad2 = api_group(client, login("bad2"), sku, team=bad["group_team"], fake_pay=fake_pay)
    run_jobs()
    # then the sound team succeeded and was delivered, the broken one's order was set aside alone
    assert team_row(good["group_team"]).state == "succeeded"
    assert status(good["id"]) == status(good2["id"]) == "delivered"
    assert status(bad2["id"]) == "paid" and member_states(bad["group_team"])[bad2["id"]] == MemberState.JOINING
    from models import failures

    with db.connection_context():
        assert failures.parked(failures.DELIVERY, [bad2["id"], good2["id"]]) == {bad2["id"]}
