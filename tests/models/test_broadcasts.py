"""models.broadcasts: audiences counted and streamed by the same conditions, a fan-out in
chunks (never the whole audience at once) that writes one outbox row per recipient through the
real sender however often it runs, and the checks on what may be sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from models import broadcasts
from models.broadcasts import Audience, Broadcast
from models.chat import ChatIdentity, GroupConfig, OutboundMessage
from models.db import db, utcnow
from models.errors import InvalidInput
from models.network import Creator
from tests.factories import chat_user, chat_users


def make(aud: Audience, text: str = "hello", **kw: object) -> Broadcast:
    with db.connection_context():
        return broadcasts.create(aud, text, share_base="https://shop.example", **kw)  # type: ignore[arg-type]


def fan_out(rt, b: Broadcast, chunk: int = broadcasts.CHUNK) -> list[int]:  # noqa: ANN001
    """Run the fan-out with the runtime's sender; returns the size of each chunk written."""
    sizes: list[int] = []

    def write(chats: Sequence[str]) -> int:
        sizes.append(len(chats))
        return rt.sender.broadcast(b.outbox_id, chats, b.payload, paid=b.paid, platform=b.platform,
                                   chat_kind=b.chat_kind)

    with db.connection_context():
        broadcasts.fan_out(b.id, write, chunk=chunk)
    return sizes


def rows(b: Broadcast) -> list[str]:
    with db.connection_context():
        return [r.chat_id for r in OutboundMessage.select(OutboundMessage.chat_id)
                .where(OutboundMessage.broadcast_id == b.outbox_id).order_by(OutboundMessage.id)]


def fresh(b: Broadcast) -> Broadcast:
    with db.connection_context():
        return Broadcast.get_by_id(b.id)


def test_a_large_audience_is_written_in_chunks_once_however_often_the_fan_out_runs(rt) -> None:  # noqa: ANN001
    """Given 2,500 Telegram chat users, when a broadcast to all of them fans out in chunks of
    1,000, then it hands them over 1,000 at a time and the outbox has one row per user, as
    counted beforehand; when a crash lost the cursor (the rows were written, the cursor not)
    and the job runs again, no row is added and the broadcast still counts 2,500."""
    chats = chat_users("telegram", 2500)
    b = make(Audience("platform", "telegram"))
    assert b.recipients == 2500
    assert fan_out(rt, b) == [1000, 1000, 500]
    assert sorted(rows(b)) == sorted(chats)
    done = fresh(b)
    assert (done.state, done.written, done.cursor > 0) == ("written", 2500, True)
    # a run after the work is done hands nothing over
    assert fan_out(rt, b) == []
    # when the cursor was lost after the rows were written, the rerun writes no second row
    with db.connection_context():
        Broadcast.update(cursor=0, written=0, state="writing").where(Broadcast.id == b.id).execute()
    assert fan_out(rt, b, chunk=700) == [700, 700, 700, 400]
    assert len(rows(b)) == 2500 and fresh(b).written == 2500


def test_creators_at_a_level_are_counted_and_streamed_alike(rt) -> None:  # noqa: ANN001
    """Given creators of several levels on two platforms and an inactive one, then the count and
    the stream agree: active creators at or above the level, with an account on the platform."""
    users = {ext: chat_user("telegram", f"tg-{ext}", rank=rank) for ext, rank in (("a", 1), ("b", 2), ("c", 3),
                                                                                   ("d", 3))}
    chat_user("wechat", "wx-c", rank=3)
    chat_user("telegram", "tg-plain")
    with db.connection_context():
        Creator.update(active=False).where(Creator.user == users["d"].id).execute()
        aud = Audience("creators", "telegram", 2)
        assert broadcasts.count(aud) == 2
        assert [chat for _, chat in broadcasts.recipients_after(aud, 0)] == ["tg-b", "tg-c"]
        assert broadcasts.count(Audience("creators", "telegram", 0)) == 3
        assert broadcasts.count(Audience("creators", "wechat", 3)) == 1
        assert broadcasts.count(Audience("platform", "telegram")) == 5


def test_wechat_users_outside_the_48_hour_window_are_not_recipients(rt) -> None:  # noqa: ANN001
    """Given WeChat users who wrote an hour and three days ago, then only the first one is counted
    and streamed: the official account cannot message the other (errcode 45015)."""
    recent = chat_user("wechat", "o-recent")
    old = chat_user("wechat", "o-old", rank=2)
    with db.connection_context():
        ChatIdentity.update(last_inbound_at=utcnow() - dt.timedelta(days=3)).where(
            ChatIdentity.user == old.id).execute()
        ChatIdentity.update(last_inbound_at=utcnow() - dt.timedelta(hours=1)).where(
            ChatIdentity.user == recent.id).execute()
        aud = Audience("platform", "wechat")
        assert broadcasts.count(aud) == 1
        assert [chat for _, chat in broadcasts.recipients_after(aud, 0)] == ["o-recent"]
        assert broadcasts.count(Audience("creators", "wechat", 0)) == 0
        assert broadcasts.count(Audience("creators", "telegram", 0)) == 0


def test_a_group_audience_is_its_one_chat(rt) -> None:  # noqa: ANN001
    with db.connection_context():
        GroupConfig.create(chat_key="telegram:-100321")
        aud = broadcasts.audience("group", group_key="telegram:-100321")
    b = make(aud)
    assert (b.recipients, b.chat_kind) == (1, "group")
    fan_out(rt, b)
    assert rows(b) == ["-100321"]


@pytest.mark.parametrize(("args", "code"), [
    (("everyone",), "invalid_audience"),
    (("platform", "console"), "invalid_platform"),
    (("creators", "telegram", "two"), "invalid_rank"),
    (("creators", "telegram", "-1"), "invalid_rank"),
    (("group", "", None, "wechat:group-1"), "invalid_group"),
    (("group", "", None, "telegram:-100404"), "unknown_group"),
])
def test_bad_audiences_are_refused(rt, args: tuple, code: str) -> None:  # noqa: ANN001
    with db.connection_context(), pytest.raises(InvalidInput) as refused:
        broadcasts.audience(*args)
    assert refused.value.code == code


def test_what_may_not_be_sent_is_refused_and_nothing_is_written(rt) -> None:  # noqa: ANN001
    chat_user("wechat", "wx-1")
    with db.connection_context():
        for aud, text, kw, code in (
                (Audience("platform", "wechat"), "hi", {"paid": True}, "paid_not_telegram"),
                (Audience("platform", "telegram"), "hi", {}, "no_recipients"),
                (Audience("platform", "wechat"), "  ", {}, "invalid_text"),
                (Audience("platform", "wechat"), "x" * 2001, {}, "invalid_text"),
                (Audience("platform", "wechat"), "hi", {"sku_code": "NO-SUCH"}, "unknown_sku")):
            with pytest.raises(InvalidInput) as refused:
                broadcasts.create(aud, text, share_base="https://shop.example", **kw)  # type: ignore[arg-type]
            assert refused.value.code == code
        assert Broadcast.select().count() == 0


def test_a_product_card_links_the_share_page(rt, shop) -> None:  # noqa: ANN001
    sku = shop.card_sku(code="GIFT-1", price=2990)
    chat_user("telegram", "tg-1")
    b = make(Audience("platform", "telegram"), "今日推荐", sku_code="GIFT-1", image_key="abc123")
    assert b.payload == {"text": "今日推荐\n\n🛒 Product GIFT-1 · 会员卡 GIFT-1 ¥29.90",
                         "buttons": [[{"text": "查看商品", "url": "https://shop.example/p/GIFT-1"}]],
                         "image_key": "abc123"}
    assert sku.code == "GIFT-1"
