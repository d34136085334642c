"""The live sessions admin over real HTTP: the list (state, creator, title, start in Asia/Shanghai,
reservations, lottery), a session's page (pins with ladder and assist offers, reservations, the
lottery, linked dramas), and the operator's actions through the live services: schedule for a
creator, reschedule, cancel with a reason, start, end (queues the settlement) — each once,
audited, refused with a message and nothing written on bad input."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from models import live_planning, reservations
from models.audit import AuditEntry
from models.db import db, utcnow
from models.events import events_for
from models.live import LivePin, LiveSession
from models.live_prices import LiveTier
from tests.factories import buyer, creator, drama_series, live_session_row

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = "/admin/live/sessions"


@pytest.fixture
def host(rt):  # noqa: ANN001, ANN201
    return creator(name="林小满")


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=20, price=9_900, code="MASK-1")


def local(moment: dt.datetime) -> str:
    """A naive UTC time as the operator types it (Shanghai wall time)."""
    return moment.replace(tzinfo=dt.UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def tomorrow_evening() -> dt.datetime:
    """Tomorrow 20:00 Shanghai, as naive UTC."""
    day = (dt.datetime.now(SHANGHAI) + dt.timedelta(days=1)).date()
    return dt.datetime.combine(day, dt.time(20, 0), SHANGHAI).astimezone(dt.UTC).replace(tzinfo=None)


def session(session_id: int) -> LiveSession:
    with db.connection_context():
        return LiveSession.get_by_id(session_id)


def sessions() -> int:
    with db.connection_context():
        return LiveSession.select().count()


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def schedule(a, **form):  # noqa: ANN001, ANN003, ANN201
    return a.post(f"{BASE}/new", form, page=f"{BASE}/new")


def act(a, session_id: int, action: str, **form):  # noqa: ANN001, ANN003, ANN201
    return a.post(f"{BASE}/{session_id}/{action}", form, page=f"{BASE}/{session_id}")


def test_ops_schedules_a_session_for_a_creator_with_pins_ladder_and_lottery(admin, host, sku):
    ops = admin("ops")
    start = tomorrow_evening()
    # when ops schedules a session: Shanghai 20:00 tomorrow, a pin with a two-tier ladder, a lottery
    answer = schedule(ops, creator=host.code, title="周五福利专场", start=local(start), minutes="90",
                      cover="https://cdn.example.com/cover.jpg",
                      pins='MASK-1, {"tiers": [{"units": 50, "price_fen": 990}, {"units": 50, "price_fen": 1990}]}',
                      lottery='{"threshold": 10, "prizes": 2, "prize_sku": "MASK-1"}', reason="运营代排")
    # then the session is scheduled at that moment (stored in UTC), for the creator, with its pin and tiers
    assert answer.status_code == 302, answer.data[:600]
    session_id = int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    s = session(session_id)
    assert (s.state, s.creator_id, s.title, s.scheduled_at, s.expected_minutes) == \
        ("scheduled", host.id, "周五福利专场", start, 90)
    with db.connection_context():
        pin = LivePin.get(LivePin.session == session_id)
        assert [t.price_fen for t in LiveTier.select().where(LiveTier.pin == pin.id).order_by(LiveTier.seq)] == \
            [990, 1990]
    # and it was audited with the operator's reason, and the event names the operator
    [entry] = audits("live.schedule")
    assert (entry.operator_name, entry.reason, entry.after["session"]) == (ops.op.name, "运营代排", session_id)
    assert [(e.topic, e.actor) for e in events_for(f"live:{session_id}")] == \
        [("live.scheduled", f"operator:{ops.op.id}")]
    # and its page shows the start in Shanghai time, the ladder price and the lottery terms
    page = ops.get(f"{BASE}/{session_id}").data.decode()
    assert local(start) in page and "¥9.90" in page and 'data-state="pending"' in page


BAD_SCHEDULES = [
    (dict(creator="NOBODY-1"), "没有邀请码为 NOBODY-1 的达人"),
    (dict(start="明天晚上"), "开播时间格式应为"),
    (dict(start="2020-01-01 20:00"), "the start time has passed"),
    (dict(pins="MASK-1, {not json"), "第 1 行的价格阶梯 不是有效的 JSON"),
    (dict(pins="NOPE-9"), "NOPE-9&#39; is on sale"),
    (dict(pins='MASK-1, {"tiers": [{"units": 10, "price_fen": -1}]}'), "a price cannot be negative"),
    (dict(lottery='{"threshold": 2, "prizes": 5, "prize_sku": "MASK-1"}'), "more prizes than reservations"),
]


def test_a_bad_schedule_form_says_why_and_writes_nothing(admin, host, sku):
    ops = admin("ops")  # one sign-in for every case (each costs a password hash)
    for change, message in BAD_SCHEDULES:
        form = dict(creator=host.code, title="周五福利专场", start=local(tomorrow_evening()), minutes="60",
                    pins="MASK-1", lottery="")
        form.update(change)
        # when the form breaks one rule
        answer = schedule(ops, **form)
        # then the form comes back with the reason and what was typed, and nothing was written
        page = answer.data.decode()
        assert answer.status_code == 400, change
        assert message in page and 'value="周五福利专场"' in page, change
        assert sessions() == 0 and audits("live.schedule") == [], change


def test_the_list_shows_state_creator_start_reservations_and_lottery(admin, host, sku):
    start = tomorrow_evening()
    with db.connection_context():
        planned = live_planning.schedule(host, live_planning.SessionSpec(
            "福利专场", start, pins=[live_planning.PinSpec("MASK-1")],
            lottery={"threshold": 5, "prizes": 1, "prize_sku": "MASK-1"})).id
    on_air = live_session_row(host, state="live", title="正在直播")
    with db.connection_context():
        for n in range(3):
            reservations.reserve(buyer(f"fan-{n}"), planned, "miniapp")
    # when a read-only operator opens the list
    viewer = admin("readonly")
    page = viewer.get(f"{BASE}/").data.decode()
    # then each session is a row with its state, creator, start (Shanghai), reservations and lottery
    row = re.search(rf'<tr data-session="{planned}" data-state="scheduled">(.*?)</tr>', page, re.S).group(1)
    assert host.code in row and "福利专场" in row and local(start) in row
    assert '<td class="reserved">3</td>' in row and "5 人预约送 1 单" in row
    assert f'data-session="{on_air}" data-state="live"' in page
    # and the state tab narrows it; read-only operators get no action forms
    live_only = viewer.get(f"{BASE}/?state=live").data.decode()
    assert f'data-session="{on_air}"' in live_only and f'data-session="{planned}"' not in live_only
    detail = viewer.get(f"{BASE}/{planned}").data.decode()
    assert 'id="cancel-form"' not in detail and 'id="reserved">3<' in detail
    assert viewer.get(f"{BASE}/new").status_code == 403


def test_reschedule_then_cancel_with_a_reason(admin, host):
    ops = admin("ops")
    session_id = live_session_row(host)
    before = session(session_id)
    later = before.scheduled_at + dt.timedelta(hours=3)
    # when ops moves the session three hours later
    answer = act(ops, session_id, "reschedule", start=local(later))
    # then it starts then, with a new plan version, audited
    assert answer.status_code == 302, answer.data[:600]
    moved = session(session_id)
    assert (moved.scheduled_at, moved.plan_version) == (later.replace(second=0, microsecond=0), 1)
    assert audits("live.reschedule")[0].before["plan_version"] == 0
    # and cancelling without a reason is refused, nothing changed
    refused = act(ops, session_id, "cancel", reason="")
    assert refused.status_code == 400 and session(session_id).state == "scheduled"
    # and with a reason it is cancelled, the reason in the audit and the event
    assert act(ops, session_id, "cancel", reason="主播临时有事").status_code == 302
    done = session(session_id)
    assert (done.state, done.plan_version) == ("cancelled", 2)
    assert audits("live.cancel")[0].reason == "主播临时有事"
    assert events_for(f"live:{session_id}")[-1].payload["reason"] == "主播临时有事"
    # and a cancelled session cannot be started: a message, no change
    again = act(ops, session_id, "start")
    assert again.status_code == 409 and session(session_id).state == "cancelled"


def test_start_then_end_queues_the_settlement_once(admin, host, rt):
    ops = admin("ops")
    session_id = live_session_row(host)
    # when ops starts the session, then ends it
    assert act(ops, session_id, "start").status_code == 302
    assert session(session_id).state == "live" and session(session_id).started_at is not None
    page = ops.get(f"{BASE}/{session_id}").data.decode()
    token = re.search(r'id="end-form">.*?name="action_token" value="([^"]+)"', page, re.S).group(1)
    first = ops.post(f"{BASE}/{session_id}/end", {"action_token": token}, page=f"{BASE}/{session_id}")
    # and the same form is sent again
    second = ops.post(f"{BASE}/{session_id}/end", {"action_token": token}, page=f"{BASE}/{session_id}")
    # then it ended once, its settlement was queued once, one audit row
    assert (first.status_code, second.status_code) == (302, 302)
    assert session(session_id).state == "ended"
    assert [j.func_name for j in rt.queue.jobs].count("tasks.settlement.settle_live") == 1
    assert len(audits("live.end")) == 1


def test_the_session_page_shows_its_dramas_and_pins(admin, host, sku):
    session_id = live_session_row(host)
    with db.connection_context():
        LivePin.create(session=session_id, sku=sku.id, position=0, slot_at=utcnow() + dt.timedelta(hours=3))
    series = drama_series(host, title="霸总的秘密", episodes=2, link=("cliffhanger", session_id))
    # when the session's page is opened
    page = admin("readonly").get(f"{BASE}/{session_id}").data.decode()
    # then the pinned product and the drama episode that leads here are listed
    assert 'data-sku="MASK-1"' in page
    assert f"/admin/live/drama/{series}" in page and "霸总的秘密" in page and "第 2 集" in page
