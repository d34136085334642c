"""Broadcasts and failed pushes through the real HTTP interface, sent through the one sender to
the fake Telegram Bot API (and the fake WeChat API for notices) by the real jobs: the preview
count is the recipients reached, every recipient gets one outbox row and one message even when
the job runs twice, progress is read from the outbox, a failed send is listed and retried, and
roles without chat.broadcast / chat.retry change nothing."""

from __future__ import annotations

import io
import os
import re

import pytest
from PIL import Image

from models.audit import AuditEntry
from models.broadcasts import Broadcast
from models.chat import GroupConfig, OutboundMessage
from models.db import db
from models.notifications import Notification
from tasks.broadcasts import queue_broadcast, send_broadcast
from tests.factories import chat_user, paid, sent_to
from tests.fakes.telegram_api import FakeTelegramAPI

NEW = "/admin/chat/broadcasts/new"
SEND = "/admin/chat/broadcasts/send"
FAILED = "/admin/chat/failed/"
COUNT = re.compile(r'id="qx-recipient-count">(\d+)<')


@pytest.fixture
def people(rt) -> dict[str, list[str]]:  # noqa: ANN001
    """Telegram users 7001-7003 (no creators), creators 7101 (1 star), 7102 (2 stars), 7103
    (3 stars) on Telegram, and on WeChat a user and a 3-star creator."""
    for ext in ("7001", "7002", "7003"):
        chat_user("telegram", ext)
    for ext, rank in (("7101", 1), ("7102", 2), ("7103", 3)):
        chat_user("telegram", ext, rank=rank)
    chat_user("wechat", "o-wx-user-1")
    chat_user("wechat", "o-wx-user-2", rank=3)
    return {"telegram": ["7001", "7002", "7003", "7101", "7102", "7103"], "stars2": ["7102", "7103"]}


def preview(client, **audience: str) -> int:  # noqa: ANN001
    answer = client.get(NEW, query_string={"preview": "1", **audience})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    return int(COUNT.search(answer.get_data(as_text=True)).group(1))


def outbox_rows(broadcast_id: int | None = None) -> list[OutboundMessage]:
    with db.connection_context():
        query = OutboundMessage.select().order_by(OutboundMessage.id)
        if broadcast_id is not None:
            query = query.where(OutboundMessage.broadcast_id == f"admin-{broadcast_id}")
        return list(query)


def broadcasts() -> list[Broadcast]:
    with db.connection_context():
        return list(Broadcast.select().order_by(Broadcast.id))


def numbers(page: str, *ids: str) -> list[int]:
    return [int(re.search(rf'id="{i}">(\d+)<', page).group(1)) for i in ids]


def test_the_preview_count_is_the_number_of_recipients_the_broadcast_reaches(
        admin, people, run_jobs, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given chat users and creators on two platforms, when an ops operator previews audiences,
    then the counts are those of the audience; when they send to creators of 2 stars and up on
    Telegram, then exactly the previewed number of chats get the message, once each, and the
    broadcast is audited with its text, audience and count."""
    ops = admin("ops")
    assert preview(ops.client, audience="platform", platform="telegram") == 6
    assert preview(ops.client, audience="platform", platform="wechat") == 2
    assert preview(ops.client, audience="creators", platform="wechat", min_rank="3") == 1
    counted = preview(ops.client, audience="creators", platform="telegram", min_rank="2")
    assert counted == 2
    # when it is sent
    answer = ops.post(SEND, {"text": "双十一会员卡限时 8 折", "audience": "creators", "platform": "telegram",
                             "min_rank": "2"}, page=NEW)
    assert answer.status_code == 302
    (b,) = broadcasts()
    assert b.recipients == counted
    run_jobs()
    # then the previewed recipients got it, once each, and nobody else
    assert sorted(s.chat_id for s in telegram.sent) == people["stars2"]
    assert all(s.text == "双十一会员卡限时 8 折" for s in telegram.sent)
    assert len(outbox_rows(b.id)) == counted
    with db.connection_context():
        (entry,) = AuditEntry.select().where(AuditEntry.action == "chat.broadcast")
    assert entry.after["text"] == "双十一会员卡限时 8 折" and entry.after["recipients"] == 2
    assert entry.after["audience"] == {"kind": "creators", "platform": "telegram", "min_rank": 2}


def test_a_job_run_twice_writes_one_row_and_sends_one_message_per_recipient(
        admin, people, run_jobs, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a broadcast to all Telegram chat users, when its job is queued a second time (RQ
    runs jobs at least once) and both runs happen, then each recipient has one outbox row and
    got one message; the progress page shows them all sent."""
    ops = admin("ops")
    ops.post(SEND, {"text": "新品上架", "audience": "platform", "platform": "telegram"}, page=NEW)
    (b,) = broadcasts()
    assert queue_broadcast(b.id)  # the second delivery of the same job
    send_broadcast(b.id)  # and a third run, in this process
    run_jobs()
    # and once more as if a crash had lost how far the job got (rows written, cursor not)
    with db.connection_context():
        Broadcast.update(cursor=0, written=0, state="writing").where(Broadcast.id == b.id).execute()
    assert queue_broadcast(b.id)
    run_jobs()
    rows = outbox_rows(b.id)
    assert sorted(r.chat_id for r in rows) == sorted(people["telegram"])
    assert sorted(s.chat_id for s in telegram.sent) == sorted(people["telegram"])
    page = ops.get(f"/admin/chat/broadcasts/{b.id}").get_data(as_text=True)
    assert numbers(page, "progress-recipients", "progress-written", "progress-queued", "progress-sent",
                   "progress-failed") == [6, 6, 0, 6, 0]


def test_progress_counts_come_from_the_outbox_and_a_failed_send_is_retried(
        admin, people, run_jobs, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a broadcast whose rows are written but not sent, then the page shows them queued;
    when one recipient has blocked the bot (403), then after the drain it shows 5 sent and 1
    failed, and the failed push is listed; when an ops operator retries it and the chat works
    again, then it is sent, the broadcast shows 6 sent, and the retry is audited."""
    ops = admin("ops")
    ops.post(SEND, {"text": "周末活动", "audience": "platform", "platform": "telegram"}, page=NEW)
    (b,) = broadcasts()
    detail = f"/admin/chat/broadcasts/{b.id}"
    assert numbers(ops.get(detail).get_data(as_text=True), "progress-written", "progress-queued",
                   "progress-sent") == [0, 0, 0]
    # when the job has written the rows (the drain not run yet)
    send_broadcast(b.id)
    assert numbers(ops.get(detail).get_data(as_text=True), "progress-written", "progress-queued",
                   "progress-sent", "progress-failed") == [6, 6, 0, 0]
    # when the drain runs and chat 7002 has blocked the bot
    telegram.fail_next(403, chat_id="7002")
    run_jobs()
    assert numbers(ops.get(detail).get_data(as_text=True), "progress-queued", "progress-sent",
                   "progress-failed") == [0, 5, 1]
    (failed,) = [r for r in outbox_rows(b.id) if r.state == "failed"]
    assert failed.chat_id == "7002" and "blocked" in failed.last_error
    listed = ops.get(FAILED).get_data(as_text=True)
    assert f'data-message="{failed.id}"' in listed and "7002" not in listed  # chat ids masked for ops
    # when it is retried
    answer = ops.post(FAILED + "retry", {"message": str(failed.id), "reason": "用户已解除屏蔽"}, page=FAILED)
    assert answer.status_code == 302
    run_jobs()
    assert len(telegram.sent_to("7002")) == 1
    assert numbers(ops.get(detail).get_data(as_text=True), "progress-queued", "progress-sent",
                   "progress-failed") == [0, 6, 0]
    assert f'data-message="{failed.id}"' not in ops.get(FAILED).get_data(as_text=True)
    with db.connection_context():
        (entry,) = AuditEntry.select().where(AuditEntry.action == "push.retry")
    assert entry.after == {"messages": [failed.id], "notices": []} and entry.reason == "用户已解除屏蔽"


def test_a_failed_delivery_notice_is_listed_and_retried(admin, shop, run_jobs, fake_wechat) -> None:  # noqa: ANN001
    """Given a delivered order whose notice WeChat refused (43101), when an ops operator retries
    it from the failed pushes, then the buyer gets the notice."""
    sku = shop.card_sku(keys=2)
    fake_wechat.fail_next(1, errcode=43101)
    order = paid(sku, "notice-buyer")
    run_jobs()
    with db.connection_context():
        note = Notification.get(Notification.order_id == order.id)
    assert note.state == "failed" and sent_to(fake_wechat, "notice-buyer") == []
    ops = admin("ops")
    assert f'data-notice="{note.id}"' in ops.get(FAILED).get_data(as_text=True)
    assert ops.post(FAILED + "retry", {"notice": str(note.id)}, page=FAILED).status_code == 302
    run_jobs()
    with db.connection_context():
        assert Notification.get_by_id(note.id).state == "sent"
    assert len(sent_to(fake_wechat, "notice-buyer")) == 1


@pytest.mark.parametrize("role", ["readonly", "support", "finance"])
def test_roles_without_chat_broadcast_cannot_send_and_nothing_is_queued(admin, people, rt, role: str) -> None:  # noqa: ANN001
    """Given a role without chat.broadcast, when it posts the composer, then 403 and no
    broadcast, no outbox row, no job; without chat.retry the retry is refused too."""
    who = admin(role)
    assert who.post(SEND, {"text": "x", "audience": "platform", "platform": "telegram"}).status_code == 403
    assert broadcasts() == [] and outbox_rows() == [] and rt.queue.count == 0
    with db.connection_context():
        rt.sender.enqueue("m:1", "telegram", "7001", {"text": "hi"}, schedule=False)
        OutboundMessage.update(state="failed").execute()
    assert who.post(FAILED + "retry", {"message": str(outbox_rows()[0].id)}).status_code == 403
    assert outbox_rows()[0].state == "failed" and rt.queue.count == 0
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action.in_(["chat.broadcast", "push.retry"])).count() == 0


def test_a_paid_broadcast_with_a_product_card_and_a_poster(admin, people, shop, rt, run_jobs,
                                                           telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a SKU and a poster image, when an ops operator sends a paid Telegram broadcast with
    both, then each chat gets the poster with the text and the product card (its share page as a
    button), sent with allow_paid_broadcast; a paid broadcast on WeChat is refused."""
    sku = shop.card_sku(code="VIP-30")
    picture = io.BytesIO()  # a photo-like image, larger than the API's request body limit
    Image.frombytes("RGB", (200, 150), os.urandom(200 * 150 * 3)).save(picture, format="JPEG", quality=95)
    assert len(picture.getvalue()) > rt.settings.MAX_BODY_BYTES
    ops = admin("ops")
    answer = ops.post(SEND, {"text": "年卡直降", "audience": "creators", "platform": "telegram", "min_rank": "3",
                             "sku_code": sku.code, "paid": "1", "poster": (io.BytesIO(picture.getvalue()), "p.jpg")},
                      page=NEW, content_type="multipart/form-data")
    assert answer.status_code == 302, answer.get_data(as_text=True)[:800]
    run_jobs()
    (sent,) = telegram.sent
    assert sent.chat_id == "7103" and sent.has_photo and sent.method == "sendPhoto"
    assert "年卡直降" in sent.text and "会员卡 VIP-30" in sent.text and "¥19.90" in sent.text
    assert str(sent.params.get("allow_paid_broadcast")).lower() == "true"
    assert "/p/VIP-30" in str(sent.params.get("reply_markup"))
    (row,) = outbox_rows()
    assert row.paid_broadcast
    # and on WeChat the paid option is refused, nothing written
    answer = ops.post(SEND, {"text": "x", "audience": "platform", "platform": "wechat", "paid": "1"}, page=NEW)
    assert answer.status_code == 400 and "付费广播只适用于 Telegram" in answer.get_data(as_text=True)
    assert len(broadcasts()) == 1


@pytest.mark.parametrize(("form", "message"), [
    ({"text": "", "audience": "platform", "platform": "telegram"}, "请填写群发内容"),
    ({"text": "x", "audience": "creators", "platform": "telegram", "min_rank": "9"}, "没有收件人"),
    ({"text": "x", "audience": "platform", "platform": "telegram", "sku_code": "NOPE"}, "没有这个在售商品"),
    ({"text": "x", "audience": "group", "group_key": "telegram:-100999"}, "没有这个群的设置"),
    ({"text": "x", "audience": "platform", "platform": "telegram", "poster": (io.BytesIO(b"not an image"), "a.png")},
     "无法读取海报图片"),
])
def test_a_bad_broadcast_is_refused_with_a_message_and_nothing_is_written(admin, people, rt, form: dict,
                                                                          message: str) -> None:  # noqa: ANN001
    ops = admin("ops")
    answer = ops.post(SEND, form, page=NEW, content_type="multipart/form-data")
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert broadcasts() == [] and outbox_rows() == [] and rt.queue.count == 0


def test_a_poster_over_the_upload_limit_is_refused_with_the_limit(admin, people, rt) -> None:  # noqa: ANN001
    """Given the upload limit (ADMIN_UPLOAD_MAX_BYTES); when a poster one byte over it is sent,
    then the composer says so with the limit (400); when one far over it is sent, then it is
    refused before its body is read (413), with the limit; nothing is written or queued."""
    limit = rt.settings.ADMIN_UPLOAD_MAX_BYTES
    ops = admin("ops")
    for body, status in ((b"\x89PNG" + b"0" * (limit - 3), 400), (b"0" * (3 * limit), 413)):
        answer = ops.post(SEND, {"text": "x", "audience": "platform", "platform": "telegram",
                                 "poster": (io.BytesIO(body), "big.png")}, page=NEW, content_type="multipart/form-data")
        assert answer.status_code == status and "文件超过大小上限 5.0 MB" in answer.get_data(as_text=True)
    assert broadcasts() == [] and outbox_rows() == [] and rt.queue.count == 0


def test_a_broadcast_to_one_group(admin, people, run_jobs, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    """Given a configured Telegram group, when a broadcast goes to it, then the group chat gets
    one message (a group row) and the preview said 1."""
    with db.connection_context():
        GroupConfig.create(chat_key="telegram:-100555", title="福利群")
    ops = admin("ops")
    assert preview(ops.client, audience="group", group_key="telegram:-100555") == 1
    ops.post(SEND, {"text": "群公告：今晚 8 点直播", "audience": "group", "group_key": "telegram:-100555"}, page=NEW)
    run_jobs()
    assert [s.chat_id for s in telegram.sent] == ["-100555"]
    (row,) = outbox_rows()
    assert row.chat_kind == "group"
