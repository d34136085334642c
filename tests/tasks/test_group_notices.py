"""Group-buy notices (tasks/group_notices.py) with the real delivery drain, RQ worker, sender and
the fake Telegram and WeChat servers: progress posted in the team's group at most once per
interval (coalesced, one post per paid count), the success message in the group once, private
notices on each member's channel once, and the refund notice when a team fails."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from rq.registry import ScheduledJobRegistry

from models import groupbuy
from models.chat import OutboundMessage
from models.db import db, utcnow
from models.groupbuy import GroupTeam
from models.wakeup import SubscribeConsent
from tasks import group_notices
from tests.bots.conftest import say
from tests.factories import buyer, chat_activity, chat_user, group_order, linked, team_of


@pytest.fixture
def fakes(telegram, fake_wechat):  # noqa: ANN001, ANN201
    fake_wechat.custom_messages.clear()
    fake_wechat.subscribe_messages.clear()
    return telegram, fake_wechat


def _group_texts(telegram, chat: str) -> list[str]:  # noqa: ANN001
    return [s.text for s in telegram.sent_to(chat)]


def _keys(prefix: str) -> list[str]:
    with db.connection_context():
        return sorted(m.key for m in OutboundMessage.select().where(OutboundMessage.key.startswith(prefix)))


def _group_subscribe(rt, wechat) -> list[tuple[str, str]]:  # noqa: ANN001
    """The group-buy subscribe messages sent (the delivery notices use their own template)."""
    return [(m["touser"], m["page"]) for m in wechat.subscribe_messages
            if m["template_id"] == rt.settings.GROUP_NOTICE_TEMPLATE_ID]


def _scheduled(rt) -> int:  # noqa: ANN001
    return len(ScheduledJobRegistry(queue=rt.queue).get_job_ids())


def test_progress_is_posted_in_the_teams_group_at_most_once_per_interval(rt, fakes, shop, run_jobs):
    telegram, _ = fakes
    # given a team of 4 that ann started and paid, and whose card she posted in her Telegram group
    sku = shop.card_sku(keys=6)
    aid = chat_activity(sku, size=4, title="四人团")
    ann = chat_user("telegram", "7001", name="ann")
    team = team_of(group_order(sku, ("start", aid), user=ann))
    run_jobs()
    say(f"拼团 {aid}", who="7001", chat="-100900", platform="telegram")
    # when bob pays, then carol pays inside the interval
    group_order(sku, ("join", team), openid="bob")
    run_jobs(include_scheduled=False)
    after_bob = _group_texts(telegram, "-100900")
    group_order(sku, ("join", team), openid="carol")
    run_jobs(include_scheduled=False)
    after_carol = _group_texts(telegram, "-100900")
    # then bob's payment is posted at once with a join button, carol's waits for the interval
    assert len(after_bob) == 1 and "进度：2/4，还差2人" in after_bob[0]
    buttons = json.loads(telegram.sent_to("-100900")[0].params["reply_markup"])["inline_keyboard"]
    assert buttons == [[{"text": "参团（2/4，还差2人）", "url": f"{rt.settings.PUBLIC_BASE_URL}/group/{team}"}]]
    assert after_carol == after_bob and _scheduled(rt) == 1
    # and a second run in the interval (a duplicate job) queues no second delayed post
    assert group_notices.progress([team]) == {"posted": 0, "throttled": 1}
    assert _scheduled(rt) == 1
    # when the interval's end comes, the delayed run posts the progress as it is then, once
    run_jobs()
    texts = _group_texts(telegram, "-100900")
    assert len(texts) == 2 and "进度：3/4，还差1人" in texts[1]
    assert _keys(f"group:{team}:p") == [f"group:{team}:p2", f"group:{team}:p3"]
    # and running the job again at a count already posted posts nothing
    rt.redis.flushdb()  # the gate is gone too: only the outbox key stops it
    assert group_notices.progress([team])["posted"] == 0


def test_success_is_told_in_the_group_once_and_to_each_member_on_their_channel(rt, fakes, shop, run_jobs):
    telegram, wechat = fakes
    # given a team of 4: ann on Telegram (she posted the card in her group), bob on the official
    # account inside its 48-hour window, carol in the mini-program with a subscribe consent,
    # dave in the mini-program without one
    sku = shop.card_sku(keys=6)
    aid = chat_activity(sku, size=4, title="成团测试")
    ann = chat_user("telegram", "7101", name="ann")
    team = team_of(group_order(sku, ("start", aid), user=ann))
    run_jobs()
    say(f"拼团 {aid}", who="7101", chat="-100901", platform="telegram")
    with db.connection_context():
        bob, carol, dave = linked(buyer("bob"), wechat="oa-bob"), buyer("carol"), buyer("dave")
        SubscribeConsent.create(user_id=carol.id, topic="groupbuy", remaining=1)
    # when the three others pay and the worker runs
    for user in (bob, carol, dave):
        group_order(sku, ("join", team), user=user)
    run_jobs()
    # then the team succeeded and its group heard it once
    with db.connection_context():
        assert GroupTeam.get_by_id(team).state == "succeeded"
    assert sum("拼团成功" in t for t in _group_texts(telegram, "-100901")) == 1
    # and each reachable member got one private notice on their channel, carol's consent used
    assert [s.text.split("\n")[0] for s in telegram.sent_to("7101") if "已成团" in s.text] == [
        "你参加的拼团「成团测试」已成团，正在为你发货，发货后会再通知你。"]
    assert [m["touser"] for m in wechat.custom_messages if "已成团" in str(m)] == ["oa-bob"]
    assert _group_subscribe(rt, wechat) == [("carol", f"pages/group/index?team={team}")]
    with db.connection_context():
        assert SubscribeConsent.get(SubscribeConsent.user_id == carol.id).remaining == 0
    assert _keys(f"group:{team}:ok") == [f"group:{team}:ok", *sorted(
        f"group:{team}:ok:u{u}" for u in (ann.id, bob.id, carol.id))]
    # when the job runs again (a retried job), nothing is written, sent or used twice
    again = group_notices.succeeded([team])
    run_jobs()
    assert again == {"group": 0, "members": 0, "unreachable": 1}
    assert sum("拼团成功" in t for t in _group_texts(telegram, "-100901")) == 1
    assert len(_group_subscribe(rt, wechat)) == 1
    assert len([m for m in wechat.custom_messages if "已成团" in str(m)]) == 1


def test_a_failed_team_tells_its_paid_members_their_money_is_refunded(rt, fakes, shop, run_jobs):
    telegram, _ = fakes
    # given a team of 3 with two paid Telegram members whose window has passed
    sku = shop.card_sku(keys=4, price=1990)
    aid = chat_activity(sku, title="差一人")
    ann, bob = chat_user("telegram", "7201"), chat_user("telegram", "7202")
    team = team_of(group_order(sku, ("start", aid), user=ann))
    group_order(sku, ("join", team), user=bob)
    run_jobs()
    with db.connection_context():
        GroupTeam.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(GroupTeam.id == team).execute()
        closed = groupbuy.close_team(team)
    assert closed.state == "failed"
    # when the failure notices run, twice
    group_notices.enqueue("failed", [team])
    group_notices.enqueue("failed", [team])
    run_jobs()
    # then each paid member was told once that the 9.90 they paid goes back
    for chat in ("7201", "7202"):
        told = [s.text.split("\n")[0] for s in telegram.sent_to(chat) if "未能在截止前成团" in s.text]
        assert told == ["很抱歉，你参加的拼团「差一人」未能在截止前成团，"
                        "已付的 ¥9.90 正在原路退回，请留意微信支付的退款通知。"]
    # and a failed team posts no success and no progress
    assert _keys(f"group:{team}:ok") == [] and _keys(f"group:{team}:p") == []
