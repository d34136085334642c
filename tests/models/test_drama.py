"""Short dramas (models/drama.py, models/drama_funnel.py): series and episodes with placed
products and a link to a live session by one of the three patterns, validated whole before
anything is written; drama plays and click-throughs through the tracking service; the funnel
plays -> click-throughs -> live entries -> sold orders per series and per creator."""

from __future__ import annotations

import pytest

from models import activity, drama, drama_funnel, levels
from models.activity import ActivityEvent
from models.db import db
from models.drama import DramaEpisode, DramaPlacement, DramaSeries, EpisodeChanges, EpisodeSpec, LinkSpec
from models.errors import Conflict, DomainError, InvalidInput, NotFound
from models.events import Event
from tests.factories import (
    creator,
    drama_series,
    live_session_row,
    mark_refunded,
    paid_order,
    play,
    plays,
)


@pytest.fixture
def host(rt):  # noqa: ANN001, ANN201
    return creator(name="林小满")


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    return shop.card_sku(keys=3, price=9_900, code="MASK-1")


def written() -> tuple[int, int, int, int]:
    with db.connection_context():
        return (DramaSeries.select().count(), DramaEpisode.select().count(), DramaPlacement.select().count(),
                Event.select().where(Event.topic.startswith("drama.")).count())


def add(host, series_id: int, number: int = 1, *, skus: list[str] | None = None,  # noqa: ANN001
        link: LinkSpec | None = None, video: str = "https://cdn.example.com/1.mp4", title: str = "第1集",
        who=...) -> DramaEpisode:  # noqa: ANN001
    with db.connection_context():
        return drama.add_episode(host if who is ... else who, series_id,
                                 EpisodeSpec(number, title, video, skus or [], link))


def update(who, episode_id: int, **changes) -> DramaEpisode:  # noqa: ANN001, ANN003
    with db.connection_context():
        return drama.update_episode(who, episode_id, EpisodeChanges(**changes))


def view(series_id: int) -> drama.SeriesView:
    with db.connection_context():
        return drama.get_series(series_id)


# ---- content -----------------------------------------------------------------------------------

def test_a_series_reads_back_with_episodes_products_and_live_links(host, sku):
    # given a scheduled session of the creator and a series of three episodes
    session = live_session_row(host, title="主角番外直播")
    series = drama_series(host, episodes=2)
    add(host, series, 3, skus=[sku.code], link=LinkSpec("placement", session), title="第3集")
    with db.connection_context():
        drama.update_episode(host, view(series).episodes[0].id,
                             EpisodeChanges(link=LinkSpec("cliffhanger", session)))
    # when it is read
    got = view(series)
    # then the episodes are in order, with their products and their links to the live room
    assert [e.number for e in got.episodes] == [1, 2, 3]
    assert (got.creator_code, got.title) == (host.code, "霸总的秘密")
    third = got.episodes[2]
    assert [(p.sku, p.retail_price_fen) for p in third.products] == [("MASK-1", 9_900)]
    assert (third.link.kind, third.link.session_id, third.link.state) == ("placement", session, "scheduled")
    assert third.link.call_to_action == drama.CALL_TO_ACTION["placement"]
    assert third.link.starts_at is not None and third.link.session_title == "主角番外直播"
    assert got.episodes[0].link.call_to_action == "想知道结局？来直播间，主播为你揭晓"
    assert got.episodes[1].link is None
    # and every change left an event
    with db.connection_context():
        topics = [e.topic for e in Event.select().where(Event.subject == f"drama:{series}").order_by(Event.id)]
    assert topics == ["drama.series_created", *["drama.episode_added"] * 3, "drama.episode_updated"]


@pytest.mark.parametrize(("kw", "code"), [
    (dict(number=0), "invalid_episode_number"),
    (dict(title="   "), "invalid_title"),
    (dict(video="http://cdn.example.com/1.mp4"), "invalid_video_url"),
    (dict(video="https://cdn.example.com/1.mp4\n"), "invalid_video_url"),
    (dict(skus=["NOPE"]), "unknown_sku"),
    (dict(skus=["MASK-1", "MASK-1"]), "duplicate_product"),
    (dict(link=LinkSpec("placement", "SESSION")), "placement_needs_products"),
    (dict(link=LinkSpec("teaser", "SESSION")), "invalid_link_kind"),
    (dict(link=LinkSpec("after_show", 10**9)), "live_not_found"),
    (dict(link=LinkSpec("after_show", "OTHER")), "session_of_another_creator"),
    (dict(link=LinkSpec("after_show", "ENDED")), "live_closed"),
    (dict(link=LinkSpec("cliffhanger", "CANCELLED")), "live_closed"),
])
def test_a_bad_episode_is_refused_and_nothing_is_written(host, sku, kw, code):
    # given a series, and sessions: the creator's own, another creator's, an ended and a cancelled one
    sessions = {"SESSION": live_session_row(host), "OTHER": live_session_row(creator()),
                "ENDED": live_session_row(host, state="ended"),
                "CANCELLED": live_session_row(host, state="cancelled")}
    series = drama_series(host)
    if "link" in kw and isinstance(kw["link"].session_id, str):
        kw["link"] = LinkSpec(kw["link"].kind, sessions[kw["link"].session_id])
    before = written()
    # when an episode breaking one rule is added
    with pytest.raises(DomainError) as caught:
        add(host, series, **kw)
    # then the rule is named and nothing was written
    assert caught.value.code == code
    assert written() == before


def test_an_episode_number_is_taken_once_per_series(host):
    series, other = drama_series(host, episodes=1), drama_series(host)
    before = written()
    # when episode 1 is added again to the series
    with pytest.raises(Conflict) as caught:
        add(host, series, 1)
    # then it is refused, while another series may have its own episode 1
    assert caught.value.code == "episode_exists" and written() == before
    assert add(host, other, 1).number == 1


def test_only_the_owner_or_an_operator_changes_a_series(host):
    series = drama_series(host, episodes=1)
    episode = view(series).episodes[0].id
    # when another creator tries to add to it or change it
    with pytest.raises(NotFound) as adding:
        add(host, series, 2, who=creator())
    with pytest.raises(NotFound) as changing:
        update(creator(), episode, title="改名")
    # then the series and the episode are "not found" for them
    assert (adding.value.code, changing.value.code) == ("series_not_found", "episode_not_found")
    # and an operator (creator=None) may change them
    assert update(None, episode, title="运营改的标题").title == "运营改的标题"
    with db.connection_context():
        assert drama.update_series(None, series, title="新剧名", actor="op:1").title == "新剧名"
        assert Event.select().where(Event.actor == "op:1").count() == 1


def test_updating_an_episode_changes_only_what_is_given(host, shop, sku):
    # given an episode with a product, linked by placement to a scheduled session
    other_sku = shop.card_sku(keys=1, code="LIPSTICK-2")
    session = live_session_row(host)
    series = drama_series(host)
    episode = add(host, series, skus=[sku.code], link=LinkSpec("placement", session)).id
    # when its products are replaced
    update(host, episode, sku_codes=[other_sku.code, sku.code])
    # then the products are the new list in order, and the link stays
    got = view(series).episodes[0]
    assert [p.sku for p in got.products] == ["LIPSTICK-2", "MASK-1"] and got.link.session_id == session
    # and removing every product of a placement is refused, nothing changed
    with pytest.raises(InvalidInput) as caught:
        update(host, episode, sku_codes=[])
    assert caught.value.code == "placement_needs_products"
    assert len(view(series).episodes[0].products) == 2
    # and link=None removes the link, after which the products may go
    update(host, episode, link=None)
    update(host, episode, sku_codes=[])
    got = view(series).episodes[0]
    assert (got.link, got.products, got.title) == (None, [], "第1集")


def test_a_link_made_before_the_session_ended_stays(host):
    # given an episode linked to a session, which then ends
    session = live_session_row(host, state="live")
    series = drama_series(host, episodes=1, link=("after_show", session))
    episode = view(series).episodes[0].id
    with db.connection_context():
        from models import live
        live.end_live(host, session)
    # when the episode is edited with its link unchanged, then that is fine and the link shows "ended"
    update(host, episode, title="大结局", link=LinkSpec("after_show", session))
    assert view(series).episodes[0].link.state == "ended"
    # but a new link to the ended session is refused
    with pytest.raises(InvalidInput) as caught:
        update(host, episode, link=LinkSpec("cliffhanger", session))
    assert caught.value.code == "live_closed"


# ---- tracking ----------------------------------------------------------------------------------

def record(events: list, source: str = "api") -> activity.RecordResult:
    with db.connection_context():
        return activity.record_events(events, user_id=None, source=source)


def test_drama_plays_and_clicks_are_recorded_for_the_series_creator(host):
    series = drama_series(host, episodes=1)
    ep = str(view(series).episodes[0].id)
    # when the mini-program reports a play and a click-through of the episode, twice
    batch = [play(host.code, "dp-1", kind="drama_play", ref=ep), play(host.code, "dc-1", kind="drama_click", ref=ep)]
    first, again = record(batch), record(batch)
    # then both are stored once
    assert (first.accepted, again.duplicates) == (2, 2)


@pytest.mark.parametrize(("who", "ref", "code"), [
    ("other", "EP", "unknown_episode"),  # an episode of another creator's series
    ("host", "999999", "unknown_episode"),
    ("host", "v1", "invalid_ref"),
    ("host", "0", "invalid_ref"),
])
def test_a_drama_event_must_name_an_episode_of_its_creator(host, who, ref, code):
    series = drama_series(host, episodes=1)
    ep = str(view(series).episodes[0].id)
    code_of = {"host": host.code, "other": creator().code}[who]
    # when a batch holds a good event and one naming a wrong episode
    batch = [play(host.code, "ok-1", kind="drama_play", ref=ep),
             play(code_of, "bad-1", kind="drama_click", ref=ep if ref == "EP" else ref)]
    with pytest.raises(DomainError) as caught:
        record(batch)
    # then the batch is refused whole
    assert caught.value.code == code
    with db.connection_context():
        assert ActivityEvent.select().count() == 0


def test_platform_exports_cannot_report_drama_events(host, tmp_path):
    series = drama_series(host, episodes=1)
    ep = view(series).episodes[0].id
    path = tmp_path / "export.csv"
    path.write_text(f"creator_code,type,ref,count,occurred_at\n{host.code},drama_play,{ep},5,2026-05-01 12:00:00\n",
                    encoding="utf-8")
    # when a CSV export holds a drama play, then it is a bad row
    with db.connection_context():
        report = activity.import_csv(path)
    assert (report.imported, [b.code for b in report.bad]) == (0, ["invalid_kind"])


def test_drama_events_leave_levels_and_the_creator_funnel_alone(host):
    # given video plays, a live entry and many drama plays and clicks of the creator
    plays(host, 7)
    plays(host, 2, ref="9", kind="live_entry")
    series = drama_series(host, episodes=1)
    ep = str(view(series).episodes[0].id)
    record([play(host.code, kind="drama_play", ref=ep, count=50), play(host.code, kind="drama_click", ref=ep, count=9)])
    # then the star-level metrics and the creator funnel count the videos and entries only
    with db.connection_context():
        metrics, funnel = levels.metrics_of(host), levels.funnel(host)
    assert (metrics.video_plays, metrics.videos, metrics.live_entries) == (7, 1, 2)
    assert (funnel.video_plays, funnel.live_entries) == (7, 2)


# ---- funnel ------------------------------------------------------------------------------------

def test_the_funnel_runs_plays_clicks_entries_orders_per_series_and_creator(host, sku):
    # given two series of the creator linked to the same session, and a third linked to another
    shared, own = live_session_row(host, state="live"), live_session_row(host)
    a = drama_series(host, title="A", episodes=2, link=("after_show", shared))
    b = drama_series(host, title="B", episodes=1, link=("cliffhanger", shared))
    c = drama_series(host, title="C", episodes=1, sku_codes=(sku.code,), link=("placement", own))
    eps = {s: [str(e.id) for e in view(s).episodes] for s in (a, b, c)}
    record([play(host.code, kind="drama_play", ref=eps[a][0], count=60),
            play(host.code, kind="drama_play", ref=eps[a][1], count=40),
            play(host.code, kind="drama_click", ref=eps[a][1], count=25),
            play(host.code, kind="drama_play", ref=eps[b][0], count=10),
            play(host.code, kind="drama_play", ref=eps[c][0], count=5),
            # live entries: 30 into the shared session, 4 into the other; another creator's
            # report about the shared session does not count
            play(host.code, kind="live_entry", ref=str(shared), count=30),
            play(host.code, kind="live_entry", ref=str(own), count=4)])
    stranger = creator()
    record([play(stranger.code, kind="live_entry", ref=str(shared), count=99)])
    # and orders in the sessions: two sold and one refunded in the shared one, one outside any
    paid_order(host, sku, amount=9_900, live_id=shared)
    paid_order(host, sku, amount=6_900, live_id=shared)
    mark_refunded(paid_order(host, sku, amount=9_900, live_id=shared))
    paid_order(host, sku, amount=1_000)
    # when the funnels are read
    with db.connection_context():
        per = drama_funnel.by_series([a, b, c])
        total = drama_funnel.of_creator(host)
    # then each series has its own plays and clicks and the figures of the session it leads to
    assert per[a].as_dict() == {"plays": 100, "clicks": 25, "live_entries": 30, "orders": 2, "gmv_fen": 16_800,
                                "sessions": 1, "click_bp": 2_500, "order_bp": 666}
    assert (per[b].plays, per[b].clicks, per[b].live_entries, per[b].orders) == (10, 0, 30, 2)
    assert (per[c].plays, per[c].live_entries, per[c].orders, per[c].sessions) == (5, 4, 0, 1)
    # and the creator's total counts the shared session once
    assert (total.plays, total.clicks, total.live_entries, total.orders, total.gmv_fen, total.sessions) == \
        (115, 25, 34, 2, 16_800, 2)


def test_a_series_without_links_or_plays_has_an_empty_funnel(host):
    series = drama_series(host, episodes=2)
    with db.connection_context():
        assert drama_funnel.by_series([series])[series] == drama_funnel.DramaFunnel()
        assert drama_funnel.of_creator(creator()) == drama_funnel.DramaFunnel()
        assert drama_funnel.by_series([]) == {}
