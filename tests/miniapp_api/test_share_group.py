"""The page behind a group-buy team's share link (miniapp_api/share.py `/group/<team>`): what the
card's button and the poster's QR open."""

from __future__ import annotations

from tests.factories import chat_activity, group_order, team_of


def test_a_teams_share_page_shows_price_progress_and_how_to_join(client, shop, run_jobs):
    # given a team of 3 of an activity whose title needs escaping, with two paid members
    sku = shop.card_sku(keys=4, price=1990)
    aid = chat_activity(sku, title="<b>冬季</b>拼团")
    team = team_of(group_order(sku, ("start", aid), openid="leader"))
    group_order(sku, ("join", team), openid="second")
    run_jobs()
    # when someone opens its share link
    page = client.get(f"/group/{team}")
    text = page.get_data(as_text=True)
    # then the page shows the escaped title, the group price against retail, the progress and
    # the time left, and the mini-program page to join it
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "&lt;b&gt;冬季&lt;/b&gt;拼团" in text and "<b>冬季" not in text
    assert "拼团价 ¥9.90（单买 ¥19.90）· 3人团" in text and "进度：2/3，还差1人" in text
    assert "还剩" in text and f"pages/group/index?team={team}" in text


def test_a_full_team_points_to_the_activity_and_unknown_teams_are_a_polite_404(client, shop, run_jobs):
    # given a team of 2 that filled
    sku = shop.card_sku(keys=3)
    aid = chat_activity(sku, size=2)
    team = team_of(group_order(sku, ("start", aid), openid="one"))
    group_order(sku, ("join", team), openid="two")
    run_jobs()
    # when its link, an unknown team's and absurd ones are opened
    full = client.get(f"/group/{team}").get_data(as_text=True)
    unknown = client.get("/group/999999")
    huge = client.get(f"/group/{2**70}")
    # then the full team shows its success and where to start another; the others are 404 pages
    assert "2/2，已成团" in full and "拼团成功，正在发货" in full and f"activity={aid}" in full
    assert f"team={team}" not in full
    assert unknown.status_code == 404 and "拼团不存在" in unknown.get_data(as_text=True)
    assert huge.status_code == 404
    assert client.get("/group/abc").status_code == 404
