"""`qianxing activity|levels|creators|rewards` operator commands, through click against the
test database and Redis."""

from __future__ import annotations

import pytest

from models import activity, events, ledger
from models.activity import TrackEvent
from models.db import db, utcnow
from models.network import Creator
from tests.factories import creator, fresh


def test_activity_import_reports_bad_rows_by_line_and_a_reimport_adds_nothing(cli, tmp_path):
    # given an export with two good rows and a bad one
    c = creator()
    path = tmp_path / "plays.csv"
    path.write_text("event_id,creator_code,type,ref,count,occurred_at\n"
                    f"x-1,{c.code},video_play,v1,200000,2026-05-01T10:00:00\n"
                    f"x-2,{c.code},video_plays,v1,5,2026-05-01T10:00:00\n"
                    f",{c.code},live_entry,live-1,9,2026-05-01T11:00:00\n", encoding="utf-8")
    # when it is imported twice
    first = cli("activity", "import", str(path))
    second = cli("activity", "import", str(path))
    # then the summary counts imports, duplicates and the bad line
    assert first.exit_code == 0, first.output
    assert "line 3: invalid_kind" in first.output
    assert "imported 2, duplicates 0, bad rows 1 (of 3 rows)" in first.output
    assert "imported 0, duplicates 2, bad rows 1" in second.output
    # and the plays earn a traffic reward, once
    assert cli("rewards", "traffic").output.strip() == "paid 1 traffic rewards"
    assert cli("rewards", "traffic").output.strip() == "paid 0 traffic rewards"
    with db.connection_context():
        assert ledger.balance(ledger.creator_account(c.id, ledger.AVAILABLE)) == -10_000


def test_activity_import_of_a_file_without_the_columns_fails_cleanly(cli, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    result = cli("activity", "import", str(path))
    assert result.exit_code == 1 and "invalid_csv" in result.output


def test_levels_show_and_evaluate(cli):
    shown = cli("levels", "show")
    assert shown.exit_code == 0, shown.output
    for name in ("一星", "二星", "三星", "十星", "百星", "千星"):
        assert name in shown.output
    assert "entry (一星): 1 video(s) AND 2 invite(s)" in shown.output
    # given a creator with the entry
    c = creator()
    creator(parent=c), creator(parent=c)
    with db.connection_context():
        activity.record_events([TrackEvent("cli-v", c.code, "video_play", "v1", 1, utcnow())],
                               user_id=None, source="api")
    # when levels are evaluated twice, then it is promoted once
    first, second = cli("levels", "evaluate"), cli("levels", "evaluate")
    assert f"creator {c.id}: 0 -> 1 一星" in first.output and "promoted 1 creators" in first.output
    assert "promoted 0 creators" in second.output
    assert fresh(c).rank == 1
    shown = cli("creators", "show", c.code)
    assert shown.exit_code == 0, shown.output
    assert f"{c.code} #{c.id}" in shown.output and "rank 1 一星" in shown.output
    assert "已邀请2人，还差1人升级" in shown.output and "available 0.00" in shown.output


def test_creators_rebind_and_detach_are_audited(cli):
    # given a creator bound under a, and another creator b
    a, b = creator(), creator()
    c = creator(parent=a)
    # when an operator moves it under b, then detaches it
    moved = cli("creators", "rebind", c.code, "--to", b.code, "--reason", "support ticket 7")
    assert moved.exit_code == 0, moved.output
    assert fresh(c).parent_id == b.id
    detached = cli("creators", "rebind", c.code, "--detach", "--reason", "left the team")
    assert detached.exit_code == 0 and fresh(c).parent_id is None
    with db.connection_context():
        rebound = [e for e in events.events_for(f"creator:{c.id}") if e.topic == "creator.rebound"]
    assert [(e.actor, e.payload["new_parent"], e.payload["reason"]) for e in rebound] == [
        ("operator:cli", b.id, "support ticket 7"), ("operator:cli", None, "left the team")]


@pytest.mark.parametrize("args", [["--reason", "x"], ["--to", "SOMEONE", "--detach", "--reason", "x"]])
def test_rebind_needs_exactly_one_target(cli, args):
    c = creator()
    result = cli("creators", "rebind", c.code, *args)
    assert result.exit_code == 2 and "exactly one of" in result.output


def test_rebind_refuses_a_cycle_and_an_unknown_code(cli):
    a = creator()
    c = creator(parent=a)
    cycle = cli("creators", "rebind", a.code, "--to", c.code, "--reason", "x")
    assert cycle.exit_code == 1 and "invite_cycle" in cycle.output
    unknown = cli("creators", "show", "NOBODY99")
    assert unknown.exit_code == 1 and "unknown_creator" in unknown.output


def test_creators_penalize_caps_the_rank(cli):
    # given a one-star creator
    c = creator()
    with db.connection_context():
        Creator.update(rank=1).where(Creator.id == c.id).execute()
    # when it is penalised to 0
    result = cli("creators", "penalize", c.code, "--to-rank", "0", "--reason", "fake plays")
    # then it is 0, capped at 0, with an audit trail
    assert result.exit_code == 0, result.output
    assert "rank 1 -> 0, capped at 0" in result.output
    assert (fresh(c).rank, fresh(c).rank_cap) == (0, 0)
    assert "creator.penalized" in cli("creators", "show", c.code).output
    bad = cli("creators", "penalize", c.code, "--to-rank", "9", "--reason", "x")
    assert bad.exit_code == 1 and "invalid_rank" in bad.output
    lifted = cli("creators", "lift-penalty", c.code)
    assert lifted.exit_code == 0 and fresh(c).rank_cap is None
