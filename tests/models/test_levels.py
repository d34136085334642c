"""Star levels: the entry needs a video AND invites, team size never promotes without sales,
evaluation only ever promotes (penalties are the only way down, and cap it), each change is
audited and pushed once, the thousand-star bonus is paid once ever; progress and funnel."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import pytest

from models import events, ledger, level_evaluation, levels, live, network
from models.db import db, utcnow
from models.errors import InvalidInput
from models.levels import DEFAULT_LEVELS, LevelSpec, Metrics, eligible_rank
from models.network import Creator
from models.notifications import LEASE_SECONDS, Notice, Notification, NotificationAttempt, NotifyError
from models.users import User
from tests.factories import creator, paid, plays, unpaid

TABLE = list(DEFAULT_LEVELS)
BONUS = 1_000_000
_n = itertools.count(1)


class RecordingNotifier:
    """A fake push channel (not our code): records what it was asked to send, and fails with
    the errors it was given first."""

    def __init__(self, channel: str = "rec", failures: list[NotifyError] | None = None) -> None:
        self.channel = channel
        self.failures = list(failures or [])
        self.sent: list[tuple[int, Notice]] = []

    def send(self, user: User, notice: Notice) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((user.id, notice))


# ---- helpers: real creators, activity and orders -----------------------------------------------


def invite(parent: Creator, n: int) -> list[Creator]:
    return [creator(parent=parent) for _ in range(n)]


def sale(shop, seller: Creator, amount_fen: int, *, live_id: int | None = None, pay: bool = True) -> int:  # noqa: ANN001
    sku = shop.card_sku(keys=1, price=amount_fen)
    openid = f"lv-buyer-{next(_n)}"
    if pay:
        return paid(sku, openid, dispatch=False, ref=seller.code, live=live_id, client_ip="10.0.0.9").id
    return unpaid(sku, openid, ref=seller.code, live=live_id, client_ip="10.0.0.9").id


def evaluate(*notifiers: RecordingNotifier, bonus: int = BONUS) -> list[level_evaluation.LevelChange]:
    with db.connection_context():
        return level_evaluation.evaluate_levels(entry_videos=1, entry_invites=2, bonus_fen=bonus,
                                                notifiers=list(notifiers))


def rank(c: Creator) -> tuple[int, int | None]:
    with db.connection_context():
        row = Creator.get_by_id(c.id)
        return row.rank, row.rank_cap


def topics(c: Creator, topic: str) -> list[dict]:
    with db.connection_context():
        return [e.payload for e in events.events_for(f"creator:{c.id}") if e.topic == topic]


def entry_star(c: Creator) -> None:
    """Give a creator what the one-star entry asks for: a video and two invites."""
    plays(c)
    invite(c, 2)


# ---- the rule (pure) ---------------------------------------------------------------------------


def test_invites_alone_never_make_a_star():
    # given many invites, plays and sales but not one video
    m = Metrics(video_plays=0, videos=0, direct_invites=500, own_gmv_fen=10**9, live_gmv_fen=10**9)
    # then not even the entry level is reached
    assert eligible_rank(m, TABLE, 1, 2) == 0
    # a video without enough invites is not enough either; both together are
    assert eligible_rank(Metrics(videos=1, direct_invites=1), TABLE, 1, 2) == 0
    assert eligible_rank(Metrics(videos=1, direct_invites=2), TABLE, 1, 2) == 1
    # the entry always needs a video, even if the setting were 0
    assert eligible_rank(Metrics(videos=0, direct_invites=2), TABLE, 0, 2) == 0


def test_team_size_never_promotes_without_sales():
    # given the entry, huge plays and a huge team but no sales
    m = Metrics(videos=3, video_plays=10**8, direct_invites=10_000)
    assert eligible_rank(m, TABLE, 1, 2) == 1
    # when the sales of 二星 arrive, then 二星
    assert eligible_rank(Metrics(videos=3, video_plays=10_000, direct_invites=3, own_gmv_fen=100_000),
                         TABLE, 1, 2) == 2


def test_each_rank_needs_every_rank_below():
    # given the numbers of 三星 but not the entry (no video)
    m = Metrics(videos=0, video_plays=60_000, own_gmv_fen=600_000, direct_invites=6)
    assert eligible_rank(m, TABLE, 1, 2) == 0
    assert eligible_rank(Metrics(videos=1, video_plays=60_000, own_gmv_fen=600_000, direct_invites=6),
                         TABLE, 1, 2) == 3


def test_a_headcount_only_level_is_refused_and_never_granted():
    # given a table whose 二星 asks for team size alone
    bad = [TABLE[0], LevelSpec(2, "二星", 0, 0, 0, 3, 1200, 550, 300, None, 2), *TABLE[2:]]
    with pytest.raises(InvalidInput) as err:
        levels.validate_table(bad)
    assert err.value.code == "headcount_only_level"
    # and even if it slipped past validation, evaluation would not grant it
    assert eligible_rank(Metrics(videos=1, direct_invites=50), bad, 1, 2) == 1


# ---- evaluation --------------------------------------------------------------------------------


def test_the_entry_promotes_once_with_an_audit_event_and_one_push(rt):
    # given a creator with one video and two invites, and one with five invites and no video
    star, recruiter = creator(), creator()
    entry_star(star)
    invite(recruiter, 5)
    push = RecordingNotifier()
    # when levels are evaluated twice
    first, second = evaluate(push), evaluate(push)
    # then only the first is promoted, once, with an event and one push
    assert [(c.creator_id, c.from_rank, c.to_rank, c.pushes) for c in first] == [(star.id, 0, 1, {"rec": "sent"})]
    assert second == []
    assert rank(star) == (1, None) and rank(recruiter) == (0, None)
    changed = topics(star, "creator.level_changed")
    assert len(changed) == 1 and changed[0]["from"] == 0 and changed[0]["to"] == 1
    assert changed[0]["reason"] == "evaluation" and changed[0]["metrics"]["videos"] == 1
    assert [(uid, n.kind, n.text) for uid, n in push.sent] == [(star.user_id, "level_up", "恭喜升级为一星！")]
    with db.connection_context():
        note = Notification.get(Notification.key == f"level_up:{star.id}:1:rec")
        assert (note.order_id, note.state, note.attempts) == (0, "sent", 1)
        assert NotificationAttempt.select().where(NotificationAttempt.notification == note.id).count() == 1


def test_sales_and_plays_unlock_the_next_level(rt, shop):
    # given a one-star creator with 3 invites and 10k plays
    c = creator()
    entry_star(c)
    invite(c, 1)
    plays(c, 10_000, ref="v2")
    assert [x.to_rank for x in evaluate()] == [1]
    # when its own sales reach 1,000 yuan (one order still unpaid does not count)
    sale(shop, c, 60_000)
    sale(shop, c, 90_000, pay=False)
    assert evaluate() == []
    sale(shop, c, 40_000)
    # then 二星
    assert [(x.from_rank, x.to_rank, x.name) for x in evaluate()] == [(1, 2, "二星")]


def test_evaluation_never_downgrades(rt):
    # given a one-star creator whose invitees then leave it (an operator moves them)
    c = creator()
    entry_star(c)
    evaluate()
    with db.connection_context():
        for child in Creator.select().where(Creator.parent == c.id):
            network.rebind(child, None, actor="operator:test", reason="moved")
    # when levels are evaluated again, then the rank stays
    assert evaluate() == [] and rank(c) == (1, None)


def test_a_penalty_lowers_and_caps_until_lifted(rt, shop):
    # given a 二星 creator
    c = creator()
    entry_star(c)
    invite(c, 1)
    plays(c, 10_000, ref="v2")
    sale(shop, c, 100_000)
    push = RecordingNotifier()
    evaluate(push)
    assert rank(c) == (2, None)
    # when it is penalised down to one star
    with db.connection_context():
        level_evaluation.penalize(c, 1, actor="operator:risk", reason="fake plays")
    # then it is one star, capped, and evaluation keeps it there
    assert rank(c) == (1, 1)
    assert evaluate(push) == [] and rank(c) == (1, 1)
    assert topics(c, "creator.penalized")[0]["cap"] == 1
    assert topics(c, "creator.level_changed")[-1] == {"from": 2, "to": 1, "reason": "penalty: fake plays"}
    # when the penalty is lifted, then the next evaluation promotes again (the 二星 notice
    # was sent before: it is not sent twice)
    with db.connection_context():
        level_evaluation.lift_penalty(c, "operator:risk", "appeal upheld")
    assert [(x.from_rank, x.to_rank, x.pushes) for x in evaluate(push)] == [(1, 2, {"rec": "done"})]
    assert rank(c) == (2, None)
    assert [n.product for _, n in push.sent] == ["二星"]


@pytest.mark.parametrize(("to_rank", "reason", "code"), [(-1, "x", "invalid_rank"), (7, "x", "invalid_rank"),
                                                         (1, "  ", "reason_required")])
def test_a_bad_penalty_is_refused(rt, to_rank, reason, code):
    c = creator()
    with db.connection_context(), pytest.raises(InvalidInput) as err:
        level_evaluation.penalize(c, to_rank, actor="operator:risk", reason=reason)
    assert err.value.code == code and rank(c) == (0, None)


def thousand_star(shop) -> Creator:  # noqa: ANN001
    """A creator with everything 千星 asks for: videos and 5M plays, 1M yuan sold in its live
    room, 30 invites."""
    c = creator()
    plays(c, 5_000_000)
    invite(c, 30)
    with db.connection_context():
        session = live.start_live(c, "launch")
    sale(shop, c, 100_000_000, live_id=session.id)
    return c


def test_the_thousand_star_bonus_is_paid_once_even_after_a_penalty(rt, shop):
    # given a creator that has earned 千星
    c = thousand_star(shop)
    push = RecordingNotifier()
    # when levels are evaluated
    [change] = evaluate(push)
    # then it is promoted to the top in one step and paid the bonus to its available balance
    assert (change.from_rank, change.to_rank, change.name, change.bonus_fen) == (0, 6, "千星", BONUS)
    account = ledger.creator_account(c.id, ledger.AVAILABLE)
    with db.connection_context():
        assert ledger.balance(account) == -BONUS and ledger.balance(ledger.REWARD_EXPENSE) == BONUS
    assert "千星奖励10000元" in push.sent[0][1].text
    # when it is penalised, lifted and promoted again
    with db.connection_context():
        level_evaluation.penalize(c, 3, actor="operator:risk", reason="review")
    assert evaluate() == [] and rank(c) == (3, 3)
    with db.connection_context():
        level_evaluation.lift_penalty(c, "operator:risk")
    [again] = evaluate()
    # then it is 千星 again, but the bonus is not paid twice
    assert (again.to_rank, again.bonus_fen) == (6, 0)
    with db.connection_context():
        assert ledger.balance(account) == -BONUS
        assert ledger.LedgerTransaction.select().where(
            ledger.LedgerTransaction.kind == level_evaluation.THOUSAND_STAR_BONUS).count() == 1
        assert ledger.unbalanced_transactions() == []


def test_a_transient_push_failure_is_retried_by_the_next_run_and_a_permanent_one_is_not(rt):
    # given two new stars, one channel failing once transiently, another failing for good
    a, b = creator(), creator()
    entry_star(a)
    entry_star(b)
    flaky = RecordingNotifier("flaky", [NotifyError("timeout", transient=True)])
    dead = RecordingNotifier("dead", [NotifyError("user refused", transient=False)] * 2)
    # when levels are evaluated
    first = evaluate(flaky, dead)
    assert [c.pushes for c in first] == [{"flaky": "retry", "dead": "failed"},
                                         {"flaky": "sent", "dead": "failed"}]
    # and evaluated again with nothing new
    assert evaluate(flaky, dead) == []
    # then each star got the flaky channel's notice exactly once, the dead one never
    assert sorted(uid for uid, _ in flaky.sent) == sorted([a.user_id, b.user_id])
    assert dead.sent == []
    with db.connection_context():
        states = {n.key: (n.state, n.attempts) for n in Notification.select()}
    assert sorted(states.values()) == [("failed", 1), ("failed", 1), ("sent", 1), ("sent", 2)]


def test_the_log_channel_writes_the_level_up(rt, caplog):
    from bots.notify import LogNotifier

    c = creator()
    entry_star(c)
    with caplog.at_level(logging.INFO, logger="bots.notify"):
        [change] = evaluate(LogNotifier())
    assert change.pushes == {"log": "sent"}
    assert f"notice to user {c.user_id}: level_up 恭喜升级为一星！" in caplog.text


def test_metrics_for_all_creators_match_one_creator_at_a_time(rt, shop):
    # given creators with plays, live entries, sales in and out of live rooms, and invites
    a, b = creator(), creator()
    c = creator(parent=a)
    plays(a, 100, ref="v1")
    plays(a, 50, ref="v1")
    plays(a, 7, ref="v2")
    plays(a, 30, ref="live-1", kind="live_entry")
    plays(b, 5, ref="vb")
    with db.connection_context():
        session = live.start_live(a)
    sale(shop, a, 1_000)
    sale(shop, a, 2_500, live_id=session.id)
    sale(shop, a, 9_999, pay=False)
    sale(shop, c, 700)
    # when metrics are computed set-based and one by one
    with db.connection_context():
        everyone = levels.all_metrics()
        one = {x.id: levels.metrics_of(x) for x in (a, b, c)}
    # then they agree, and they are right
    assert everyone == one
    assert one[a.id] == Metrics(video_plays=157, videos=2, live_entries=30, own_gmv_fen=3_500,
                                live_gmv_fen=2_500, direct_invites=1)
    assert one[c.id] == Metrics(own_gmv_fen=700)


# ---- progress and funnel -----------------------------------------------------------------------


def progress(c: Creator) -> levels.Progress:
    with db.connection_context():
        return levels.progress(Creator.get_by_id(c.id), entry_videos=1, entry_invites=2)


def test_progress_shows_what_the_next_level_needs(rt, shop):
    # given a new creator with one invite and no video
    c = creator()
    invite(c, 1)
    p = progress(c)
    assert (p.rank, p.name, p.next_rank, p.next_name) == (0, "未入星", 1, "一星")
    assert [(t.metric, t.have, t.need) for t in p.thresholds] == [("videos", 0, 1), ("direct_invites", 1, 2)]
    assert p.invite_line == "已邀请1人，还差1人升级" and not p.ready
    # with two invites but still no video: invites are enough, the level is not
    invite(c, 1)
    assert progress(c).invite_line == "已邀请2人，邀请人数已达标" and not progress(c).ready
    plays(c)
    assert progress(c).invite_line == "已邀请2人，已满足升级条件" and progress(c).ready
    # once one-star, the next level asks for plays, sales and a third invite
    evaluate()
    p = progress(c)
    assert p.invite_line == "已邀请2人，还差1人升级"
    assert p.as_dict() == {
        "rank": 1, "name": "一星", "capped": False, "ready": False, "invites": 2,
        "invite_line": "已邀请2人，还差1人升级",
        "next": {"rank": 2, "name": "二星", "thresholds": [
            {"metric": "video_plays", "label": "视频播放", "have": 1, "need": 10_000, "met": False},
            {"metric": "own_gmv_fen", "label": "个人销售额", "have": 0, "need": 100_000, "met": False},
            {"metric": "direct_invites", "label": "直接邀请", "have": 2, "need": 3, "met": False}]}}


def test_progress_at_the_top_and_under_a_penalty(rt, shop):
    c = thousand_star(shop)
    evaluate()
    p = progress(c)
    assert (p.name, p.next_rank, p.thresholds, p.invite_line) == ("千星", None, [], "已邀请30人，已是最高等级")
    with db.connection_context():
        level_evaluation.penalize(c, 2, actor="operator:risk", reason="review")
    p = progress(c)
    assert (p.rank, p.next_name, p.capped, p.ready) == (2, "三星", True, False)


def test_the_funnel_counts_plays_entries_and_sold_orders(rt, shop):
    # given 2,000 plays, 50 live-room entries, three sold orders (one in the live room) and an
    # unpaid one
    c = creator()
    plays(c, 1_500, ref="v1")
    plays(c, 500, ref="v2")
    plays(c, 50, ref="live-1", kind="live_entry")
    with db.connection_context():
        session = live.start_live(c)
    for amount in (1_000, 2_000):
        sale(shop, c, amount)
    sale(shop, c, 3_000, live_id=session.id)
    sale(shop, c, 4_000, pay=False)
    with db.connection_context():
        f = levels.funnel(c)
    # then orders per play and per entry are basis points rounded down
    assert f.as_dict() == {
        "video_plays": 2_000, "live_entries": 50, "orders": 3, "gmv_fen": 6_000, "live_orders": 1,
        "live_gmv_fen": 3_000,
        "conversion": {"play_to_order_bp": 15, "entry_to_order_bp": 600, "orders_per_1000_plays": "1.50"}}


def test_an_empty_funnel_has_zero_conversion(rt):
    with db.connection_context():
        f = levels.funnel(creator())
    assert f.as_dict()["conversion"] == {"play_to_order_bp": 0, "entry_to_order_bp": 0,
                                         "orders_per_1000_plays": "0.00"}


class CrashingNotifier(RecordingNotifier):
    """A channel whose first push dies mid-way (as a killed worker would)."""

    def __init__(self) -> None:
        super().__init__("crashy")
        self.crashed = False

    def send(self, user: User, notice: Notice) -> None:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("worker killed")
        super().send(user, notice)


def test_a_push_lost_in_a_crash_goes_out_once_on_a_later_run(rt):
    # given two new stars and a run that dies while pushing the first notice
    a, b = creator(), creator()
    entry_star(a)
    entry_star(b)
    channel = CrashingNotifier()
    with pytest.raises(RuntimeError):
        evaluate(channel)
    # then both promotions are committed, and both notices wait in the outbox
    assert rank(a) == (1, None) and rank(b) == (1, None)
    with db.connection_context():
        assert sorted(n.state for n in Notification.select()) == ["pending", "sending"]
    # when the next run comes (after the first claim's lease ran out), then each notice is
    # sent exactly once, and later runs send nothing more
    evaluate(channel)
    with db.connection_context():
        Notification.update(claimed_at=utcnow() - dt.timedelta(seconds=LEASE_SECONDS + 1)).where(
            Notification.state == "sending").execute()
    evaluate(channel)
    evaluate(channel)
    assert sorted(uid for uid, _ in channel.sent) == sorted([a.user_id, b.user_id])
    with db.connection_context():
        assert sorted(n.state for n in Notification.select()) == ["sent", "sent"]
