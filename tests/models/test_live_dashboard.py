"""The live dashboard's counters (models/live_dashboard.py, models/live_reconcile.py) on real
Redis and the real database: viewers from entries and heartbeats, paid orders counted once
through the real delivery job, the rebuild after Redis lost its data, and the reconciliation
that makes the counters equal to the database after a session with paid, expired and refunded
orders."""

from __future__ import annotations

import datetime as dt

import pytest

from models import live, live_dashboard, live_reconcile, reservations
from models.db import db, utcnow
from models.errors import Conflict, NotFound
from models.live_dashboard import DashboardPolicy, LiveSessionStats
from tasks import delivery
from tasks import live_dashboard as jobs
from tests.factories import (
    buyer,
    end_session,
    laddered,
    live_sale,
    live_session,
    mark_refunded,
    on_air,
    order_row,
)

T0 = dt.datetime(2026, 12, 1, 12, 0, 0)
POLICY = DashboardPolicy(viewer_timeout_s=60, sample_every_s=15, history=10)


def snap(rt, session_id: int, now: dt.datetime | None = None) -> dict:  # noqa: ANN001
    with db.connection_context():
        return live_dashboard.snapshot(rt.redis, session_id, now=now or utcnow(), policy=POLICY)


def test_viewers_online_come_from_entries_and_heartbeats_and_leave_after_the_timeout(rt):
    # given a live session
    _, sid = on_air()
    with db.connection_context():
        # when viewer 1 enters at T0, viewer 2 at T0+10 s and keeps sending heartbeats, viewer 1 twice
        assert live_dashboard.entered(rt.redis, sid, 1, T0)
        assert live_dashboard.entered(rt.redis, sid, 1, T0)
        live_dashboard.entered(rt.redis, sid, 2, T0 + dt.timedelta(seconds=10))
        online = live_dashboard.heartbeat(rt.redis, sid, 2, T0 + dt.timedelta(seconds=50))
    # then both are online at T0+50 s, counted once each
    assert online == 2
    assert snap(rt, sid, T0 + dt.timedelta(seconds=50))["online"] == 2
    # and at T0+100 s viewer 1 (last seen T0) is gone, viewer 2 (last seen T0+50 s) is not
    later = snap(rt, sid, T0 + dt.timedelta(seconds=100))
    assert (later["online"], later["unique_viewers"]) == (1, 2)


def test_a_late_entry_never_moves_a_newer_heartbeat_back(rt):
    # given a viewer whose heartbeat arrived at T0+60 s
    _, sid = on_air()
    with db.connection_context():
        live_dashboard.heartbeat(rt.redis, sid, 7, T0 + dt.timedelta(seconds=60))
        # when a tracking batch reports the same viewer's entry at T0
        live_dashboard.entered(rt.redis, sid, 7, T0)
    # then the viewer is still online until T0+120 s
    assert snap(rt, sid, T0 + dt.timedelta(seconds=110))["online"] == 1


def test_entries_into_a_session_that_is_not_live_are_not_counted(rt):
    # given a scheduled session and an ended one
    planned = live_session()
    host, ended = on_air()
    end_session(host, ended)
    with db.connection_context():
        # when viewers enter them
        assert not live_dashboard.entered(rt.redis, planned.id, 1, T0)
        assert not live_dashboard.entered(rt.redis, ended, 1, T0)
        # then nothing is counted, and a heartbeat is refused
        with pytest.raises(Conflict) as refused:
            live_dashboard.heartbeat(rt.redis, ended, 1, T0)
        with pytest.raises(NotFound):
            live_dashboard.heartbeat(rt.redis, 999_999, 1, T0)
    assert refused.value.code == "session_not_live"
    assert snap(rt, ended)["unique_viewers"] == 0


def test_turn_up_counts_viewers_who_had_reserved(rt):
    # given a scheduled session two viewers reserved, which then goes live
    session = live_session()
    fans = [buyer(f"fan-{i}") for i in range(3)]
    with db.connection_context():
        for fan in fans[:2]:
            reservations.reserve(fan, session.id, "miniapp")
        live.go_live(None, session.id, actor="test")
        # when one fan who reserved and one who did not enter (the first twice)
        for fan in (fans[0], fans[0], fans[2]):
            live_dashboard.entered(rt.redis, session.id, fan.id, utcnow())
    figures = snap(rt, session.id)
    # then turn-up is 1 of 2 reservations
    assert (figures["reservations"], figures["turned_up"], figures["turnup_bp"]) == (2, 1, 5000)


def test_paid_orders_are_counted_once_through_the_delivery_job(rt, shop, run_jobs):
    # given a live session with two products
    host, sid = on_air()
    card, other = shop.card_sku(keys=5, price=1990), shop.card_sku(keys=5, price=990)
    # when three orders by two buyers are paid and delivered by the real job
    orders = [live_sale(card, host, sid, "b1"), live_sale(card, host, sid, "b2"), live_sale(other, host, sid, "b1")]
    run_jobs()
    # and the same batch is delivered again (RQ runs jobs at least once)
    delivery.deliver_orders([o.id for o in orders])
    figures = snap(rt, sid)
    # then each order counts once: orders, GMV, buyers and per-product sales
    assert (figures["orders"], figures["gmv_fen"], figures["buyers"]) == (3, 1990 * 2 + 990, 2)
    by_sku = {p["sku"]: (p["units"], p["gmv_fen"]) for p in figures["products"]}
    assert by_sku == {card.code: (2, 3980), other.code: (1, 990)}


def test_conversion_is_buyers_over_unique_viewers(rt, shop, run_jobs):
    # given four viewers of whom one buys
    host, sid = on_air()
    card = shop.card_sku(keys=2)
    with db.connection_context():
        for viewer in range(4):
            live_dashboard.entered(rt.redis, sid, 1000 + viewer, utcnow())
    live_sale(card, host, sid, "converted")
    run_jobs()
    # then conversion is 1/4
    assert snap(rt, sid)["conversion_bp"] == 2500


def test_orders_placed_are_counted_as_they_happen(rt):
    # given a live session
    _, sid = on_air()
    # when two orders are placed (the placement's hook)
    live_dashboard.order_placed(rt.redis, sid, 1, 990)
    live_dashboard.order_placed(rt.redis, sid, 1, 1990)
    # then the dashboard shows them
    assert snap(rt, sid)["orders_placed"] == 2


def test_the_counters_rebuild_from_the_database_when_redis_lost_them(rt, shop, run_jobs):
    # given a session with two paid orders counted
    host, sid = on_air()
    card = shop.card_sku(keys=5, price=500)
    live_sale(card, host, sid, "x1")
    live_sale(card, host, sid, "x2")
    run_jobs()
    before = snap(rt, sid)
    # when Redis loses everything (a restart without persistence)
    rt.redis.flushdb()
    after = snap(rt, sid)
    # then the paid figures come back from the database, once
    assert (after["orders"], after["gmv_fen"], after["buyers"]) == (before["orders"], before["gmv_fen"], 2)
    assert after["gmv_fen"] == 1000
    # and an order whose delivery is reported again later is not counted twice
    delivery.deliver_orders(_paid_ids(sid))
    assert snap(rt, sid)["orders"] == 2


def _paid_ids(sid: int) -> list[int]:
    from models.orders import Order

    with db.connection_context():
        return [o.id for o in Order.select(Order.id).where(Order.live_id == sid)]


def _database_figures(sid: int) -> tuple[int, int, int, dict[int, int]]:
    from models.orders import Order

    with db.connection_context():
        sold = list(Order.select().where(Order.live_id == sid, Order.status.in_(("paid", "delivered"))))
    units: dict[int, int] = {}
    for o in sold:
        units[o.sku_id] = units.get(o.sku_id, 0) + o.quantity
    return len(sold), sum(o.amount_fen for o in sold), len({o.user_id for o in sold}), units


def test_after_the_session_the_counters_equal_the_database(rt, shop, run_jobs):
    # given a session with paid orders, one later refunded, and an expired one
    host, sid = on_air()
    card, other = shop.card_sku(keys=10, price=1990), shop.card_sku(keys=10, price=990)
    kept = [live_sale(card, host, sid, "p1"), live_sale(other, host, sid, "p2"), live_sale(card, host, sid, "p1")]
    refunded = live_sale(other, host, sid, "p3")
    run_jobs()
    mark_refunded(refunded.id)
    order_row(card, openid="p4", status="expired", live_id=sid, seller=host)
    assert snap(rt, sid)["orders"] == 4  # the refund is not known to the counters yet
    # when the session ends and the sweep reconciles it
    end_session(host, sid, ago=dt.timedelta(hours=1))
    assert jobs.reconcile_ended() == {"reconciled": 1, "failed": 0}
    # then the counters equal the database: paid and delivered orders only
    orders, gmv, buyers, units = _database_figures(sid)
    figures = snap(rt, sid)
    assert (figures["orders"], figures["gmv_fen"], figures["buyers"]) == (orders, gmv, buyers) == (3, 1990 * 2 + 990, 2)
    assert {p["sku_id"]: p["units"] for p in figures["products"] if p["units"]} == units
    assert figures["final"] is True and figures["orders_placed"] == len(kept) + 2
    # and the Redis counters themselves were overwritten (a reader without the table agrees)
    stats = rt.redis.hgetall(live_dashboard.key(sid, "stats"))
    assert int(stats[b"orders"]) == 3 and int(stats[b"gmv_fen"]) == gmv
    assert rt.redis.scard(live_dashboard.key(sid, "paid")) == 3
    # and the final figures are stored once per session; the next sweep finds nothing to do
    with db.connection_context():
        row = LiveSessionStats.get_by_id(sid)
    assert (row.orders, row.gmv_fen, row.buyers) == (3, gmv, 2)
    assert jobs.reconcile_ended() == {"reconciled": 0, "failed": 0}


def test_the_sweep_waits_for_late_payments_and_reconciling_twice_is_harmless(rt, shop, run_jobs):
    # given a session that ended just now and one that ended an hour ago
    host, fresh = on_air()
    end_session(host, fresh)
    host2, old = on_air()
    live_sale(shop.card_sku(keys=2, price=700), host2, old, "late")
    run_jobs()
    end_session(host2, old, ago=dt.timedelta(hours=1))
    # when the sweep runs (delay LIVE_DASHBOARD_RECONCILE_DELAY_S)
    with db.connection_context():
        due = live_reconcile.unreconciled(utcnow(), delay_s=rt.settings.LIVE_DASHBOARD_RECONCILE_DELAY_S)
    # then only the old one is due
    assert due == [old]
    # and reconciling it twice writes the same figures
    with db.connection_context():
        first = live_reconcile.reconcile(old, rt.redis)
        second = live_reconcile.reconcile(old, rt.redis)
        assert LiveSessionStats.select().where(LiveSessionStats.session == old).count() == 1
    assert (first.orders, first.gmv_fen) == (second.orders, second.gmv_fen) == (1, 700)
    assert snap(rt, old)["orders"] == 1


def test_samples_are_kept_once_per_interval_and_bounded(rt):
    # given a live session
    _, sid = on_air()
    with db.connection_context():
        figures = live_dashboard.snapshot(rt.redis, sid, now=T0, policy=POLICY)
    # when the dashboard is looked at twice within the interval
    assert live_dashboard.sample(rt.redis, figures, T0, POLICY)
    assert not live_dashboard.sample(rt.redis, figures, T0 + dt.timedelta(seconds=1), POLICY)
    # then one sample is kept
    assert [p["t"] for p in live_dashboard.history(rt.redis, sid)] == [T0.replace(tzinfo=dt.UTC).timestamp()]
    # and no more than `history` samples are ever kept
    for n in range(1, POLICY.history + 5):
        assert live_dashboard.sample(rt.redis, figures, T0 + dt.timedelta(seconds=15 * n), POLICY)
    assert len(live_dashboard.history(rt.redis, sid)) == POLICY.history


def test_an_unknown_session_has_no_dashboard(rt):
    with db.connection_context(), pytest.raises(NotFound) as missing:
        live_dashboard.snapshot(rt.redis, 424242)
    assert missing.value.code == "live_not_found"


def test_the_command_reconciles_a_session_now(rt, shop, run_jobs, cli):
    # given an ended session with a sale
    host, sid = on_air()
    live_sale(shop.card_sku(keys=2, price=600), host, sid, "cli-buyer")
    run_jobs()
    end_session(host, sid)
    # when the operator reconciles it from the shell (and names a session that does not exist)
    done, missing = cli("live", "reconcile-dashboard", str(sid)), cli("live", "reconcile-dashboard", "999999")
    # then the figures are stored and printed; the unknown one is a clean error
    assert done.exit_code == 0, done.output
    assert f"live session {sid}: 1 paid orders, GMV 600 fen" in done.output
    assert missing.exit_code == 1 and "not found" in missing.output
    with db.connection_context():
        assert LiveSessionStats.get_by_id(sid).gmv_fen == 600


def test_products_show_the_current_tier_price_and_what_is_left(rt, shop):
    # given a live session with a product on a two-tier ladder (2 at 9.90, then 3 at 19.90)
    sku = shop.card_sku(keys=10, price=2990)
    session, pin = laddered(sku, ((2, 990), (3, 1990)))
    # then the dashboard shows the first tier's price and stock for that pin
    product = snap(rt, session.id)["products"][0]
    offer = (product["pin_id"], product["price_fen"], product["left_at_tier"], product["left_total"])
    assert offer == (pin.id, 990, 2, 5)
    assert product["sold_out"] is False and product["units"] == 0


def test_the_sampling_job_keeps_history_for_live_sessions_only(rt):
    # given two live sessions and an ended one
    on_air()
    on_air()
    host, ended = on_air()
    end_session(host, ended)
    # when the periodic job runs twice in a row
    first, second = jobs.sample_live(), jobs.sample_live()
    # then each live session got one sample, the ended one none
    assert (first, second) == (2, 0)
    assert live_dashboard.history(rt.redis, ended) == []
