"""Activity data: batches deduplicated by event id, CSV imports of platform exports with bad
rows reported by line, and traffic rewards paid by tier, each increment once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import activity, ledger, network
from models.activity import ActivityEvent, InvalidEvent, TrackEvent
from models.db import db, utcnow
from models.errors import InvalidInput, NotFound
from models.ledger import LedgerTransaction
from tests.books import bucket
from tests.factories import creator, play


def record(events: list[TrackEvent], source: str = "api", **kw) -> activity.RecordResult:  # noqa: ANN003
    with db.connection_context():
        return activity.record_events(events, user_id=None, source=source, **kw)


def stored() -> int:
    with db.connection_context():
        return ActivityEvent.select().count()


def test_a_replayed_batch_is_stored_once(rt):
    # given a batch of three events, one of them twice in the batch itself
    c = creator()
    batch = [play(c.code, "a-1"), play(c.code, "a-2", kind="live_entry", ref="live-7"), play(c.code, "a-1")]
    # when it is recorded, then replayed
    first, second = record(batch), record(batch)
    # then two events are stored, and the replay changed nothing
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates) == (0, 3)
    assert stored() == 2
    with db.connection_context():
        row = ActivityEvent.get(ActivityEvent.event_id == "a-2")
    assert (row.creator_id, row.kind, row.ref, row.source) == (c.id, "live_entry", "live-7", "api")


@pytest.mark.parametrize(("bad", "code"), [
    (dict(event_id="has space"), "invalid_event_id"),
    (dict(event_id="x" * 65), "invalid_event_id"),
    (dict(kind="like"), "invalid_kind"),
    (dict(ref=""), "invalid_ref"),
    (dict(ref="v" * 41), "invalid_ref"),
    (dict(count=0), "invalid_count"),
    (dict(count=101), "invalid_count"),  # the API reports a handful of plays at most
    (dict(count=True), "invalid_count"),
    (dict(when=utcnow() + dt.timedelta(days=2)), "invalid_occurred_at"),
])
def test_a_bad_item_refuses_the_whole_batch_and_names_its_index(rt, bad, code):
    # given a batch whose third item is malformed
    c = creator()
    batch = [play(c.code), play(c.code), play(c.code, **bad)]
    # when it is recorded, then it is refused with the item's index and nothing is stored
    with pytest.raises(InvalidEvent) as err:
        record(batch)
    assert (err.value.code, err.value.index) == (code, 2)
    assert "events[2]" in err.value.message
    assert stored() == 0


def test_an_unknown_creator_code_is_not_found_and_nothing_is_written(rt):
    c = creator()
    with pytest.raises(NotFound) as err:
        record([play(c.code), play("NOBODY99")])
    assert err.value.code == "unknown_creator" and "events[1]" in err.value.message
    assert stored() == 0


def test_batches_are_bounded_and_csv_counts_may_be_aggregates(rt):
    c = creator()
    with pytest.raises(InvalidInput) as err:
        record([play(c.code) for _ in range(6)], max_batch=5)
    assert err.value.code == "too_many_events"
    # an aggregate count is refused from the API but accepted from a platform export
    assert record([play(c.code, count=5_000_000)], source="csv").accepted == 1
    with pytest.raises(InvalidEvent):
        record([play(c.code, count=10_000_001)], source="csv")


def test_an_aware_timestamp_is_stored_in_utc(rt):
    c = creator()
    beijing = dt.timezone(dt.timedelta(hours=8))
    record([play(c.code, "tz-1", when=dt.datetime(2026, 1, 2, 8, 30, tzinfo=beijing))])
    with db.connection_context():
        assert ActivityEvent.get(ActivityEvent.event_id == "tz-1").occurred_at == dt.datetime(2026, 1, 2, 0, 30)


# ---- CSV ---------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8-sig")  # Excel writes a BOM
    return path


def test_csv_import_skips_bad_rows_by_line_and_a_reimport_adds_nothing(rt, tmp_path):
    # given an export with good rows (some without an id), bad rows and a blank line
    a, b = creator(), creator()
    path = write(tmp_path, "\n".join([
        "event_id,creator_code,type,ref,count,occurred_at",
        f"p-1,{a.code},video_play,v100,120000,2026-05-01T10:00:00+08:00",  # line 2
        f",{a.code},video_play,v101,30,2026-05-01 11:00:00",  # 3: no id: derived
        f",{b.code},LIVE_ENTRY,live-3,7,2026-05-01T12:00:00Z",  # 4
        f"p-4,{a.code},video_play,v100,abc,2026-05-01T10:00:00",  # 5: bad count
        f"p-5,{a.code},share,v100,1,2026-05-01T10:00:00",  # 6: bad type
        "p-6,NOBODY99,video_play,v100,1,2026-05-01T10:00:00",  # 7: unknown creator
        f"p-7,{a.code},video_play,v100,1,yesterday",  # 8: bad time
        "",
        f"p-8,{b.code},video_play,v200,5,2026-05-02T10:00:00",  # 10
    ]) + "\n")
    # when it is imported twice
    with db.connection_context():
        first = activity.import_csv(path)
        second = activity.import_csv(path)
    # then four rows are stored once, the bad ones are reported with their line numbers
    assert (first.rows, first.imported, first.duplicates, first.bad_count) == (8, 4, 0, 4)
    assert [(r.line, r.code) for r in first.bad] == [
        (5, "invalid_count"), (6, "invalid_kind"), (7, "unknown_creator"), (8, "invalid_occurred_at")]
    assert (second.imported, second.duplicates, second.bad_count) == (0, 4, 4)
    assert stored() == 4
    with db.connection_context():
        p1 = ActivityEvent.get(ActivityEvent.event_id == "p-1")
        assert (p1.count, p1.source, p1.occurred_at) == (120_000, "csv", dt.datetime(2026, 5, 1, 2, 0))
        assert ActivityEvent.select().where(ActivityEvent.kind == "live_entry").get().creator_id == b.id


def test_a_reexport_without_ids_matches_the_first_import(rt, tmp_path):
    # given the same rows exported twice without event ids, in another column order
    c = creator()
    first = write(tmp_path, f"creator_code,type,ref,count,occurred_at\n{c.code},video_play,v1,10,2026-05-01T10:00:00\n")
    again = write(tmp_path, f"occurred_at,ref,count,type,creator_code\n2026-05-01T10:00:00,v1,10,video_play,{c.code}\n",
                  "again.csv")
    with db.connection_context():
        assert activity.import_csv(first).imported == 1
        report = activity.import_csv(again)
    # then the second is a duplicate
    assert (report.imported, report.duplicates) == (0, 1) and stored() == 1


def test_a_csv_without_a_required_column_is_refused(rt, tmp_path):
    path = write(tmp_path, "event_id,creator_code,type,ref,occurred_at\n")
    with db.connection_context(), pytest.raises(InvalidInput) as err:
        activity.import_csv(path)
    assert err.value.code == "invalid_csv" and "count" in err.value.message


# ---- traffic rewards ---------------------------------------------------------------------------


def available(c: network.Creator) -> int:
    return bucket(c, ledger.AVAILABLE)


def award() -> int:
    with db.connection_context():
        return activity.award_traffic_rewards()


def traffic_keys() -> list[str]:
    with db.connection_context():
        return sorted(t.key for t in LedgerTransaction.select().where(
            LedgerTransaction.kind == activity.TRAFFIC_REWARD))


def test_traffic_tiers_pay_each_increment_once(rt):
    # given a video at 120k plays (in two events) and one under the first tier
    c = creator()
    record([play(c.code, ref="v1", count=60_000), play(c.code, ref="v1", count=60_000),
            play(c.code, ref="v2", count=99_999)], source="csv")
    # when rewards are awarded twice
    assert (award(), award()) == (1, 0)
    # then the first tier paid 100 yuan once
    assert available(c) == 10_000
    assert traffic_keys() == [f"traffic:{c.id}:v1:100000"]
    # when the video passes 500k, then the difference to 500 yuan is paid
    record([play(c.code, ref="v1", count=400_000)], source="csv")
    assert (award(), award()) == (1, 0)
    assert available(c) == 50_000
    # when another video jumps straight past 1M, then it earns 1,000 yuan in one payment
    record([play(c.code, ref="v3", count=1_200_000)], source="csv")
    assert award() == 1
    assert available(c) == 150_000
    assert traffic_keys() == sorted([f"traffic:{c.id}:v1:100000", f"traffic:{c.id}:v1:500000",
                                     f"traffic:{c.id}:v3:1000000"])
    with db.connection_context():
        assert ledger.balance(ledger.REWARD_EXPENSE) == 150_000
        assert ledger.unbalanced_transactions() == []


def test_live_entries_and_inactive_creators_earn_no_traffic_reward(rt):
    c, gone = creator(), creator()
    record([play(c.code, kind="live_entry", ref="live-1", count=2_000_000),
            play(gone.code, ref="v1", count=2_000_000)], source="csv")
    with db.connection_context():
        network.Creator.update(active=False).where(network.Creator.id == gone.id).execute()
    assert award() == 0 and traffic_keys() == []


@h_settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.lists(st.integers(1, 400_000), min_size=1, max_size=3), min_size=1, max_size=5))
def test_a_video_is_paid_exactly_its_highest_tier_whatever_the_order_of_plays(rt, steps):
    # given a fresh creator whose video's plays arrive in random steps, awarded after each
    c = creator()
    tiers = activity.DEFAULT_TIERS
    total = 0
    for step in steps:
        record([play(c.code, ref="clip", count=n) for n in step], source="csv")
        total += sum(step)
        award()
        # then what the video earned so far is exactly its highest tier's reward
        reached = [reward for plays, reward in tiers if plays <= total]
        assert available(c) == (reached[-1] if reached else 0)
    # and running again pays nothing new
    assert award() == 0
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []


def test_csv_times_without_an_offset_are_chinese_wall_clock_unless_told_otherwise(rt, tmp_path):
    # given an export whose times carry no offset, as Chinese platforms write them
    c = creator()
    path = write(tmp_path, "event_id,creator_code,type,ref,count,occurred_at\n"
                           f"z-1,{c.code},video_play,v1,10,2026-05-01 00:30:00\n")
    other = write(tmp_path, "event_id,creator_code,type,ref,count,occurred_at\n"
                            f"z-2,{c.code},video_play,v1,10,2026-05-01 00:30:00\n", "utc.csv")
    with db.connection_context():
        # when it is imported as it is, and another one with its zone named
        activity.import_csv(path)
        activity.import_csv(other, timezone="UTC")
        # then half past midnight in Beijing is the previous day in UTC, and the named zone holds
        times = {e.event_id: e.occurred_at for e in ActivityEvent.select()}
    assert times == {"z-1": dt.datetime(2026, 4, 30, 16, 30), "z-2": dt.datetime(2026, 5, 1, 0, 30)}


def test_an_unknown_time_zone_is_refused_before_anything_is_read(rt, tmp_path):
    path = write(tmp_path, "event_id,creator_code,type,ref,count,occurred_at\n")
    with db.connection_context(), pytest.raises(InvalidInput) as err:
        activity.import_csv(path, timezone="Mars/Olympus")
    assert err.value.code == "invalid_timezone" and stored() == 0
