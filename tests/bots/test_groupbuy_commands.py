"""Group-buy in chat (bots/commands/groupbuy.py) through the real core: the activity list, the
activity card with its open teams, a member's team card that ties the team to the community
group it is posted in, the Telegram join buttons, the poster, and polite refusals."""

from __future__ import annotations

import datetime as dt

from models import groupbuy
from models.db import db, utcnow
from models.groupbuy import GroupActivity, GroupTeam
from tests.bots.conftest import say, text_of
from tests.factories import chat_activity, chat_user, group_order, team_of


def _team(team_id: int) -> GroupTeam:
    with db.connection_context():
        return GroupTeam.get_by_id(team_id)


def test_the_list_and_an_activity_card_without_teams(rt, shop):
    # given no activity yet
    assert "没有进行中的拼团" in text_of(say("拼团", who="ann"))
    # when an activity opens on a 19.90 SKU at 9.90 for teams of 3
    sku = shop.card_sku(keys=5, price=1990)
    aid = chat_activity(sku, title="冬季会员卡")
    listed = text_of(say("/groupbuy", who="ann"))
    card = say(f"拼团 {aid}", who="ann", chat="grp-1")
    # then the list names it with group price against retail, and the card says how to start one
    assert f"#{aid} 冬季会员卡 · 拼团价 ¥9.90（单买 ¥19.90）· 3人团" in listed
    assert "还没有人开团" in text_of(card) and f"pages/group/index?activity={aid}" in text_of(card)
    assert card[0].buttons == ()


def test_bad_input_is_answered_politely_and_changes_nothing(rt, shop):
    # given an activity that has ended
    sku = shop.card_sku(keys=2)
    aid = chat_activity(sku)
    with db.connection_context():
        GroupActivity.update(ends_at=utcnow() - dt.timedelta(minutes=1)).where(GroupActivity.id == aid).execute()
    # when someone asks with no number, an unknown activity, the ended one and bad poster numbers
    answers = [text_of(say(t, who="bob")) for t in
               ("拼团 abc", "拼团 99999", f"拼团 {aid}", "拼团海报", "拼团海报 x", "/groupposter 424242")]
    # then each is a polite sentence, and no team exists
    assert "拼团 活动编号" in answers[0]
    assert "没有找到这个拼团活动" in answers[1]
    assert "已经结束" in answers[2]
    assert "拼团海报 团编号" in answers[3] and "拼团海报 团编号" in answers[4]
    assert "没有找到这个团" in answers[5]
    with db.connection_context():
        assert GroupTeam.select().count() == 0


def test_a_members_card_ties_the_team_to_the_group_it_is_posted_in(rt, shop, run_jobs):
    # given ann started a team from the mini-program and paid, and bob has nothing to do with it
    sku = shop.card_sku(keys=5, price=1990)
    aid = chat_activity(sku, title="三人拼团卡")
    ann = chat_user("console", "ann")
    team = team_of(group_order(sku, ("start", aid), user=ann))
    run_jobs()
    # when bob asks for the activity's card in a group, then ann asks for it there
    seen_by_bob = say(f"拼团 {aid}", who="bob", chat="grp-2")
    card = say(f"拼团{aid}", who="ann", chat="grp-2")
    # then bob sees the open team with its join link, and ann's card is her team's
    assert f"团 #{team}：1/3，还差2人" in text_of(seen_by_bob)
    assert f"/group/{team}" in text_of(seen_by_bob)
    assert "进度：1/3，还差2人" in text_of(card) and "拼团价 ¥9.90（单买 ¥19.90）" in text_of(card)
    assert "还剩" in text_of(card) and card[0].link.endswith(f"/group/{team}")
    # and only ann's card tied the team to the group (its progress will be posted there)
    t = _team(team)
    assert (t.chat_platform, t.chat_id) == ("console", "grp-2")
    # a second group does not take it over
    say(f"拼团 {aid}", who="ann", chat="grp-3")
    assert _team(team).chat_id == "grp-2"


def test_telegram_cards_carry_url_buttons_to_the_share_page(rt, shop, run_jobs):
    # given a team of 3 with two paid members, one a Telegram user
    sku = shop.card_sku(keys=5)
    aid = chat_activity(sku)
    tg = chat_user("telegram", "7001", name="小美")
    team = team_of(group_order(sku, ("start", aid), user=tg))
    group_order(sku, ("join", team), openid="mini-buyer")
    run_jobs()
    # when the Telegram user posts the card in a Telegram group, and another asks for the activity
    card = say(f"/groupbuy {aid}", who="7001", name="小美", chat="-100777", platform="telegram")
    other = say(f"拼团 {aid}", who="7002", chat="-100777", platform="telegram")
    # then both carry a URL button to the team's share page with the progress, no link in the text
    url = f"{rt.settings.PUBLIC_BASE_URL}/group/{team}"
    assert [(b.text, b.url) for r in card for row in r.buttons for b in row] == [("参团（2/3，还差1人）", url)]
    assert [(b.text, b.url) for r in other for row in r.buttons for b in row] == [
        (f"参团 #{team}（2/3，还差1人）", url)]
    assert url not in text_of(card)
    assert (_team(team).chat_platform, _team(team).chat_id) == ("telegram", "-100777")


def test_a_full_team_card_has_no_join_button_and_the_poster_has_the_share_qr(rt, shop, run_jobs):
    # given a team of 2 that filled and succeeded
    sku = shop.card_sku(keys=5)
    aid = chat_activity(sku, size=2, title="双人团")
    tg = chat_user("telegram", "7101")
    team = team_of(group_order(sku, ("start", aid), user=tg))
    group_order(sku, ("join", team), openid="second")
    run_jobs()
    with db.connection_context():
        assert groupbuy.team_page(team, viewer_id=None).state == "succeeded"
    # when its member asks for the card in private, and for the poster
    card = say(f"拼团 {aid}", who="7101", platform="telegram")
    poster = say(f"拼团海报 {team}", who="7101", platform="telegram")
    # then the card says it succeeded, offers no button, and ties no group (a private chat)
    assert "已成团" in text_of(card) and "拼团成功，正在发货" in text_of(card)
    assert card[0].buttons == () and _team(team).chat_id is None
    # and the poster is a PNG with the team's share link
    assert poster[0].image is not None and poster[0].image.startswith(b"\x89PNG")
    assert poster[0].link.endswith(f"/group/{team}")
