"""The short-drama admin over real HTTP: the series list with each series' funnel (plays ->
click-throughs -> live entries -> paid orders of the linked sessions), a series' page, and the
operator's edits through models/drama — audited, refused with a message and nothing written on
bad input."""

from __future__ import annotations

import re

import pytest

from models import activity
from models.audit import AuditEntry
from models.db import db
from models.drama import DramaEpisode, DramaPlacement
from tests.factories import creator, drama_series, live_session_row, paid_order, play

BASE = "/admin/live/drama"


@pytest.fixture
def host(rt):  # noqa: ANN001, ANN201
    return creator(name="林小满")


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=5, price=9_900, code="MASK-1")


def episodes(series_id: int) -> list[DramaEpisode]:
    with db.connection_context():
        return list(DramaEpisode.select().where(DramaEpisode.series == series_id).order_by(DramaEpisode.number))


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def cell(page: str, series_id: int, name: str) -> str:
    row = re.search(rf'<tr data-series="{series_id}">(.*?)</tr>', page, re.S).group(1)
    return re.search(rf'<td class="{name}"[^>]*>(.*?)</td>', row, re.S).group(1).strip()


def test_the_list_shows_each_series_with_its_funnel(admin, host, sku):
    # given a series whose last episode leads to a live session, with plays, clicks, entries, orders
    session = live_session_row(host, state="live")
    linked = drama_series(host, title="霸总的秘密", episodes=2, link=("after_show", session))
    quiet = drama_series(creator(), title="无人问津")
    ep = str(episodes(linked)[0].id)
    with db.connection_context():
        activity.record_events([play(host.code, kind="drama_play", ref=ep, count=40),
                                play(host.code, kind="drama_click", ref=ep, count=8),
                                play(host.code, kind="live_entry", ref=str(session), count=6)],
                               user_id=None, source="api")
    paid_order(host, sku, amount=9_900, live_id=session)
    # when a read-only operator opens the list
    viewer = admin("readonly")
    page = viewer.get(f"{BASE}/").data.decode()
    # then each series shows its funnel
    assert [cell(page, linked, n) for n in ("plays", "clicks", "entries", "orders")] == ["40", "8", "6", "1"]
    assert cell(page, linked, "gmv") == "¥99.00"
    assert [cell(page, quiet, n) for n in ("plays", "orders")] == ["0", "0"]
    # and the creator filter narrows the list
    mine = viewer.get(f"{BASE}/?creator={host.code}").data.decode()
    assert f'data-series="{linked}"' in mine and f'data-series="{quiet}"' not in mine


def test_ops_edits_a_series_and_its_episodes(admin, host, sku):
    ops = admin("ops")
    session = live_session_row(host, title="番外直播")
    series = drama_series(host, episodes=1)
    page = f"{BASE}/{series}"
    # when ops renames the series
    assert ops.post(f"{BASE}/{series}/edit", {"title": "新剧名", "cover_url": ""}, page=page).status_code == 302
    # and adds episode 2 with a placed product linked by placement to the creator's session
    answer = ops.post(f"{BASE}/{series}/episodes", {"number": "2", "title": "第2集", "sku_codes": "MASK-1",
                                                    "video_url": "https://cdn.example.com/2.mp4",
                                                    "link_kind": "placement", "session_id": str(session)}, page=page)
    assert answer.status_code == 302, answer.data[:600]
    # then the page shows it, with its product and its link to the session
    shown = ops.get(page).data.decode()
    assert "新剧名" in shown and "剧情植入" in shown and "番外直播" in shown and 'class="qx-mono">MASK-1' in shown
    second = episodes(series)[1]
    assert (second.number, second.link_kind, second.live_session_id) == (2, "placement", session)
    # when ops removes the link and the product of episode 2
    answer = ops.post(f"{BASE}/{series}/episodes/{second.id}", {"title": "第2集（修）", "sku_codes": "",
                                                               "video_url": second.video_url, "link_kind": ""},
                      page=page)
    # then the episode has neither, and every edit was audited with its after-state
    assert answer.status_code == 302
    edited = episodes(series)[1]
    assert (edited.title, edited.link_kind, edited.live_session_id) == ("第2集（修）", None, None)
    with db.connection_context():
        assert DramaPlacement.select().where(DramaPlacement.episode == second.id).count() == 0
    assert [len(audits(a)) for a in ("drama.series_edit", "drama.episode_add", "drama.episode_edit")] == [1, 1, 1]
    assert audits("drama.episode_add")[0].after["session"] == session


BAD_EPISODES = [
    ({"video_url": "http://cdn.example.com/2.mp4"}, "must be an https:// address"),
    ({"link_kind": "placement"}, "placement link needs a product"),
    ({"number": "1"}, "already has an episode 1"),
    ({"number": "二"}, "集数 必须是整数"),
]


def test_a_bad_episode_form_says_why_and_writes_nothing(admin, host):
    ops = admin("ops")  # one sign-in for every case
    session = live_session_row(host)
    series = drama_series(host, episodes=1)
    for form, message in BAD_EPISODES:
        data = {"number": "2", "title": "第2集", "video_url": "https://cdn.example.com/2.mp4",
                "session_id": str(session), **form}
        # when the form breaks a rule
        answer = ops.post(f"{BASE}/{series}/episodes", data, page=f"{BASE}/{series}")
        # then the page says why, and nothing was written
        assert answer.status_code in (400, 409), form
        assert message in answer.data.decode(), form
        assert len(episodes(series)) == 1 and audits("drama.episode_add") == [], form


def test_read_only_operators_see_no_edit_forms(admin, host):
    series = drama_series(host, episodes=1)
    viewer = admin("readonly")
    page = viewer.get(f"{BASE}/{series}").data.decode()
    assert "第1集" in page and 'id="episode-new"' not in page and 'id="series-form"' not in page
    assert viewer.get(f"{BASE}/999999").status_code == 404


def test_the_live_and_drama_pages_read_in_english(admin, host, sku):
    # given a session with a pin, a lottery-free plan and a series linked to it, all named in ASCII
    session = live_session_row(host, title="Friday special")
    series = drama_series(host, title="Secret", episodes=1, sku_codes=(sku.code,), link=("placement", session))
    ops = admin("ops")
    ops.post("/admin/lang", {"lang": "en", "next": "/admin/"}, action=False)
    # when the pages are read in English, then none of their own text is left in Chinese
    for url in ("/admin/live/sessions/", f"/admin/live/sessions/{session}", "/admin/live/sessions/new",
                f"{BASE}/", f"{BASE}/{series}"):
        page = ops.get(url).get_data(as_text=True)
        body = page.split('<h1 class="h4">', 1)[1]  # our pages, after the menu
        body = re.sub(r"第\d+集|林小满|会员卡 MASK-1|>中文<", "", body)  # data and the language menu, not labels
        assert not re.search(r"[\u4e00-\u9fff]", body), (url, re.findall(r".{30}[\u4e00-\u9fff]+.{10}", body)[:5])
