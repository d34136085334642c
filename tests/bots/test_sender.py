"""The outbound sender against the fake Telegram Bot API through the real aiogram client: one
message per idempotency key, claims that keep concurrent drains apart, 429 retry_after,
backoff, permanent failures, attempts, the per-chat and per-group buckets (timestamps seen at
the fake), broadcasts as one job, poster file_id reuse and the adapters' send_replies."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry

from bots.buckets import Limits
from bots.sender import Sender
from bots.types import Button, Reply
from models.chat import OutboundAttempt, OutboundMessage
from models.db import db, utcnow
from models.outbox import LEASE_S
from tests.fakes.telegram_api import FakeTelegramAPI

TG = "telegram"


def make_sender(rt, poster_dir: Path | None = None, **limits: float) -> Sender:  # noqa: ANN001
    """A sender with the test settings, fast limits unless a test says otherwise, and job
    scheduling recorded instead of queued (tests drive the drains themselves)."""
    values = dict(telegram_per_s=1000.0, telegram_per_chat_per_s=100.0, telegram_per_group_per_min=6000.0)
    values.update(limits)
    scheduled: list[tuple[str, dt.datetime | None]] = []
    sender = Sender(rt.redis, rt.settings, limits=Limits.from_settings(rt.settings, **values),
                    schedule=lambda platform, at: scheduled.append((platform, at)), intervals=[1, 1],
                    poster_dir=poster_dir)
    sender.scheduled = scheduled  # type: ignore[attr-defined]
    return sender


def rows() -> list[OutboundMessage]:
    with db.connection_context():
        return list(OutboundMessage.select().order_by(OutboundMessage.id))


def attempts_of(key: str) -> list[OutboundAttempt]:
    with db.connection_context():
        return list(OutboundAttempt.select().join(OutboundMessage).where(OutboundMessage.key == key)
                    .order_by(OutboundAttempt.number))


def drain(sender: Sender, deadline_s: float = 5.0, batch: int = 500):  # noqa: ANN201
    with db.connection_context():
        return sender.drain(TG, deadline_s=deadline_s, batch=batch)


def test_same_key_twice_is_one_message_ever(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        # given a message enqueued twice under one key
        assert sender.enqueue("notice:1", TG, "1001", Reply(text="已发货")) is True
        assert sender.enqueue("notice:1", TG, "1001", Reply(text="已发货 again")) is False
    # when it is drained twice, and enqueued once more after it went out
    first = drain(sender)
    with db.connection_context():
        assert sender.enqueue("notice:1", TG, "1001", Reply(text="已发货")) is False
    second = drain(sender)
    # then the chat got it exactly once, with the first payload
    assert [s.text for s in telegram.sent_to(1001)] == ["已发货"]
    assert (first.sent, second.sent) == (1, 0)
    (row,) = rows()
    assert row.state == "sent" and row.attempts == 1 and row.sent_at is not None
    (attempt,) = attempts_of("notice:1")
    assert attempt.ok and attempt.status == "200" and attempt.number == 1


def test_concurrent_drains_never_send_a_row_twice(rt, telegram: FakeTelegramAPI) -> None:
    # given 120 messages to 120 chats and two senders (as two worker processes would have)
    senders = [make_sender(rt), make_sender(rt)]
    with db.connection_context():
        for i in range(120):
            senders[0].enqueue(f"m:{i}", TG, str(5000 + i), Reply(text=f"hello {i}"), schedule=False)
    results = []
    # when both drain at once, in small batches, from two threads
    threads = [threading.Thread(target=lambda s=s: results.append(drain(s, batch=7))) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every chat received its message exactly once, and both drains did part of the work
    counts = Counter(s.chat_id for s in telegram.sent)
    assert len(counts) == 120 and set(counts.values()) == {1}
    assert sum(r.sent for r in results) == 120
    assert all(r.state == "sent" and r.attempts == 1 for r in rows())
    with db.connection_context():
        assert OutboundAttempt.select().count() == 120


def test_a_claimed_row_is_left_alone_until_its_lease_runs_out(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.enqueue("fresh", TG, "7001", Reply(text="a"), schedule=False)
        sender.enqueue("stale", TG, "7002", Reply(text="b"), schedule=False)
        # given two rows held by drains: one claimed just now, one by a drain that died long ago
        OutboundMessage.update(state="sending", claimed_at=utcnow()).where(OutboundMessage.key == "fresh").execute()
        OutboundMessage.update(state="sending", claimed_at=utcnow() - dt.timedelta(seconds=LEASE_S + 5)).where(
            OutboundMessage.key == "stale").execute()
    # when another drain runs
    drain(sender, deadline_s=1.0)
    # then only the row whose lease ran out was sent
    assert [s.chat_id for s in telegram.sent] == ["7002"]
    states = {r.key: r.state for r in rows()}
    assert states == {"fresh": "sending", "stale": "sent"}


def test_429_retry_after_is_honoured_and_pauses_the_chat(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.enqueue("r:1", TG, "8001", Reply(text="一"), schedule=False)
    # given the Bot API answers the next send with 429 retry_after=1
    telegram.fail_next(429, retry_after=1)
    start = time.monotonic()
    # when the sender drains
    stats = drain(sender, deadline_s=6.0)
    # then the message arrived once, no earlier than retry_after after the first try
    (sent,) = telegram.sent_to(8001)
    first_try = attempts_of("r:1")[0]
    assert sent.at - start >= 1.0
    assert stats.sent == 1 and stats.retried == 1
    # and both tries are recorded: the 429 with its retry_after, then the success
    tries = attempts_of("r:1")
    assert [(a.number, a.ok, a.status) for a in tries] == [(1, False, "429"), (2, True, "200")]
    assert first_try.retry_after_s == 1.0
    assert (tries[1].created_at - tries[0].created_at).total_seconds() >= 1.0


def test_a_cluster_of_429s_pauses_the_whole_platform(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        for i in range(20):
            sender.enqueue(f"c:{i}", TG, str(8100 + i), Reply(text="x"), schedule=False)
    # given the Bot API's own flood limit: the next 3 sends (3 chats) are refused for 1 s
    telegram.fail_next(429, retry_after=1, times=3)
    start = time.monotonic()
    drain(sender, deadline_s=6.0)
    # then every message arrived once, and after the third 429 nothing was sent for a second
    arrivals = sorted(s.at for s in telegram.sent)
    assert len(arrivals) == 20 and len({s.chat_id for s in telegram.sent}) == 20
    late = [t - start for t in arrivals if t - start >= 0.9]
    early = [t - start for t in arrivals if t - start < 0.9]
    assert len(early) <= 17 and len(late) >= 3, (early, late)


def test_transient_errors_retry_with_backoff_then_succeed(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.enqueue("t:1", TG, "9001", Reply(text="retry me"), schedule=False)
    # given two 500s from the Bot API, with retry intervals of 1 s and 1 s
    telegram.fail_next(500, times=2)
    start = time.monotonic()
    stats = drain(sender, deadline_s=8.0)
    # then the third try went through, each try at least an interval after the one before
    (sent,) = telegram.sent_to(9001)
    assert sent.at - start >= 2.0
    tries = attempts_of("t:1")
    assert [(a.ok, a.status) for a in tries] == [(False, "5xx"), (False, "5xx"), (True, "200")]
    assert all((b.created_at - a.created_at).total_seconds() >= 1.0 for a, b in zip(tries, tries[1:], strict=False))
    assert stats.sent == 1 and stats.retried == 2


def test_transient_errors_give_up_after_the_last_interval(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.enqueue("t:2", TG, "9002", Reply(text="never"), schedule=False)
    telegram.fail_next(502, times=10)
    drain(sender, deadline_s=6.0)
    # then: the first try and one per interval (2), then failed for good
    (row,) = rows()
    assert row.state == "failed" and row.attempts == 3
    assert len(attempts_of("t:2")) == 3 and not telegram.sent_to(9002)


@pytest.mark.parametrize(("code", "status"), [(403, "403"), (400, "400")])
def test_permanent_errors_are_recorded_and_never_retried(rt, telegram: FakeTelegramAPI, code: int,
                                                         status: str) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.enqueue("p:1", TG, "9100", Reply(text="blocked?"), schedule=False)
    # given the user blocked the bot (403) or the chat does not exist (400)
    telegram.fail_next(code)
    stats = drain(sender, deadline_s=3.0)
    # then the row is failed with the reason, one attempt, and nothing left to do
    (row,) = rows()
    assert row.state == "failed" and row.attempts == 1
    assert ("blocked" in row.last_error) if code == 403 else ("chat not found" in row.last_error)
    assert [(a.ok, a.status) for a in attempts_of("p:1")] == [(False, status)]
    assert stats.failed == 1 and stats.next_due is None
    assert drain(sender, deadline_s=1.0).claimed == 0


def test_per_chat_limit_spaces_messages_at_the_fake(rt, telegram: FakeTelegramAPI) -> None:
    # given 2 messages a second per chat (burst 1) and 6 messages to one chat
    sender = make_sender(rt, telegram_per_chat_per_s=2.0, chat_burst=1)
    with db.connection_context():
        for i in range(6):
            sender.enqueue(f"pc:{i}", TG, "9200", Reply(text=f"#{i}"), schedule=False)
        sender.enqueue("pc:other", TG, "9201", Reply(text="other chat"), schedule=False)
    start = time.monotonic()
    drain(sender, deadline_s=6.0)
    mine = telegram.sent_to(9200)
    # then they arrived in order, at least 0.5 s apart (a little slack for the network)
    assert [s.text for s in mine] == [f"#{i}" for i in range(6)]
    gaps = [b.at - a.at for a, b in zip(mine, mine[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps
    # and another chat was not held up by them
    assert telegram.sent_to(9201)[0].at - start < 0.4


def test_per_group_limit_spaces_messages_at_the_fake(rt, telegram: FakeTelegramAPI) -> None:
    # given 120 messages a minute per group (burst 2) and 6 messages to one group
    sender = make_sender(rt, telegram_per_group_per_min=120.0, group_burst=2)
    with db.connection_context():
        for i in range(6):
            sender.enqueue(f"g:{i}", TG, "-100777", Reply(text=f"g{i}"), chat_kind="group", schedule=False)
    drain(sender, deadline_s=6.0)
    at = [s.at for s in telegram.sent_to(-100777)]
    # then after the burst of 2 they came 0.5 s apart: never more than 2 + 2/s in any second
    assert len(at) == 6
    assert at[5] - at[0] >= 4 * 0.5 - 0.05
    assert [round(b - a, 1) for a, b in zip(at[1:], at[2:], strict=False)] == [0.5] * 4
    for i in range(len(at)):
        window = [t for t in at if at[i] <= t <= at[i] + 1.0]
        assert len(window) <= 4


def test_overall_limit_holds_across_chats(rt, telegram: FakeTelegramAPI) -> None:
    # given an overall limit of 20/s and 30 chats
    sender = make_sender(rt, telegram_per_s=20.0)
    with db.connection_context():
        for i in range(30):
            sender.enqueue(f"o:{i}", TG, str(9300 + i), Reply(text="hi"), schedule=False)
    drain(sender, deadline_s=6.0)
    at = sorted(s.at for s in telegram.sent)
    # then 30 messages took about (30 - burst) / 20 seconds
    assert len(at) == 30
    assert at[-1] - at[0] >= (30 - 1 - 1) / 20.0 - 0.05


def test_broadcast_is_one_job_for_many_recipients(rt, telegram: FakeTelegramAPI, run_jobs) -> None:  # noqa: ANN001
    outbound = rt.sender
    chats = [str(20_000 + i) for i in range(40)]
    with db.connection_context():
        # when a message goes to 40 chats through the process's sender
        promo = Reply(text="今晚 8 点直播", buttons=((Button("看看", url="https://example.com/live"),),))
        written = outbound.broadcast("promo-1", chats, promo)
        again = outbound.broadcast("promo-1", chats, Reply(text="今晚 8 点直播"))
    # then its 40 rows are written with ONE drain job queued (not one per recipient)
    assert (written, again) == (40, 0)
    assert rt.queue.count == 1
    assert rt.queue.jobs[0].func_name == "tasks.chat.drain_outbound"
    # and running the job sends each chat the message once
    run_jobs()
    counts = Counter(s.chat_id for s in telegram.sent)
    assert sorted(counts) == sorted(chats) and set(counts.values()) == {1}
    assert all(r.broadcast_id == "promo-1" and r.state == "sent" for r in rows())
    markup = json.loads(telegram.sent[0].params["reply_markup"])
    assert markup["inline_keyboard"][0][0] == {"text": "看看", "url": "https://example.com/live"}


def test_paid_broadcast_sets_the_flag(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt)
    with db.connection_context():
        sender.broadcast("paid-1", ["30001", "30002"], Reply(text="付费广播"), paid=True)
        sender.enqueue("free", TG, "30003", Reply(text="普通"), schedule=False)
    drain(sender)
    paid = {s.chat_id: s.params.get("allow_paid_broadcast") for s in telegram.sent}
    assert paid == {"30001": "true", "30002": "true", "30003": None}


def test_a_poster_is_uploaded_once_then_sent_by_file_id(rt, telegram: FakeTelegramAPI, tmp_path: Path) -> None:
    sender = make_sender(rt, poster_dir=tmp_path)
    png = b"\x89PNG\r\n\x1a\n" + b"poster-bytes" * 50
    # given the same poster replied in two chats
    with db.connection_context():
        sender.send_replies("u1", TG, "40001", [Reply(text="你的海报", image=png, image_key="poster-abc")])
        sender.send_replies("u2", TG, "40002", [Reply(text="你的海报", image=png, image_key="poster-abc")])
    first, second = telegram.sent_to(40001)[0], telegram.sent_to(40002)[0]
    # then the first send uploaded the bytes and the second reused the returned file_id
    assert first.method == second.method == "sendPhoto"
    attached = first.params["photo"].removeprefix("attach://")
    assert first.params[attached] == png
    file_id = rt.redis.get("qianxing:tg:file:poster-abc").decode()
    assert file_id.startswith("photo-") and second.params["photo"] == file_id
    assert second.params["caption"] == "你的海报"
    # and the image is kept on disk by its key, not in the row
    assert (tmp_path / "poster-abc.png").read_bytes() == png
    assert rows()[0].payload == {"text": "你的海报", "image_key": "poster-abc"}


def test_send_replies_sends_in_order_once_per_update(rt, telegram: FakeTelegramAPI) -> None:
    sender = make_sender(rt, telegram_per_chat_per_s=1.0)
    replies = [Reply(text="第一"), Reply(text="第二", buttons=((Button("团队", data="team"),),)),
               Reply(text="第三", link="https://t.me/qianxing_bot?start=ABC")]
    with db.connection_context():
        # when the adapter answers update 77 with three replies, then the update is redelivered
        states = sender.send_replies("77", TG, "50001", replies)
        again = sender.send_replies("77", TG, "50001", replies)
    keys = [f"reply:telegram:77:{i}" for i in range(3)]
    # then the three replies went out at once (the chat's burst), in order, exactly once
    assert states == again == dict.fromkeys(keys, "sent")
    got = telegram.sent_to(50001)
    assert [s.text for s in got] == ["第一", "第二", "第三\nhttps://t.me/qianxing_bot?start=ABC"]
    assert json.loads(got[1].params["reply_markup"])["inline_keyboard"] == [[{"text": "团队", "callback_data": "team"}]]
    assert sender.scheduled == []  # nothing left for a job


def test_send_replies_leaves_what_the_buckets_hold_back_to_a_job(rt, telegram: FakeTelegramAPI) -> None:
    # given a chat allowed 1 message every 2 s, without burst, and 3 replies
    sender = make_sender(rt, telegram_per_chat_per_s=0.5, chat_burst=1)
    with db.connection_context():
        states = sender.send_replies("78", TG, "50002", [Reply(text="a"), Reply(text="b"), Reply(text="c")])
    # then the first went at once and the rest wait, pending, with a drain scheduled for later
    assert list(states.values()) == ["sent", "pending", "pending"]
    assert len(telegram.sent_to(50002)) == 1
    assert sender.scheduled and sender.scheduled[-1][0] == TG


def test_private_messages_never_go_to_a_group(rt) -> None:
    sender = make_sender(rt)
    with db.connection_context(), pytest.raises(ValueError, match="private"):
        sender.enqueue("v:1", TG, "-100900", Reply(text="卡密", private=True), chat_kind="group")
    assert rows() == []


def test_drain_job_retries_later_through_the_scheduler(rt, telegram: FakeTelegramAPI, run_jobs,  # noqa: ANN001
                                                      monkeypatch) -> None:  # noqa: ANN001
    from tasks import chat

    outbound = rt.sender
    # given drain jobs that stop after half a second, and a message whose first try meets a 500
    monkeypatch.setattr(chat, "DRAIN_DEADLINE_S", 0.5)
    telegram.fail_next(500)
    with db.connection_context():
        outbound.enqueue("job:1", TG, "60001", Reply(text="稍后"))
    # when the queued job runs
    assert rt.queue.count == 1
    run_jobs(include_scheduled=False)
    # then nothing arrived yet, and a wake-up job is scheduled for the retry (1 s later)
    assert not telegram.sent_to(60001)
    assert len(ScheduledJobRegistry(queue=rt.queue).get_job_ids()) == 1
    # and when it runs after that second, the message goes out once
    time.sleep(1.1)
    run_jobs()
    assert [s.text for s in telegram.sent_to(60001)] == ["稍后"]
    assert [a.status for a in attempts_of("job:1")] == ["5xx", "200"]


def test_drain_all_finds_rows_whose_job_was_lost(rt, telegram: FakeTelegramAPI, run_jobs) -> None:  # noqa: ANN001
    from tasks import chat

    sender = make_sender(rt)
    with db.connection_context():
        # given a due message with no job queued for it (Redis lost the job)
        sender.enqueue("lost:1", TG, "60002", Reply(text="还在"), schedule=False)
    assert rt.queue.count == 0
    # when the periodic safety net runs
    assert chat.drain_all() == [TG]
    run_jobs()
    # then the message went out
    assert [s.text for s in telegram.sent_to(60002)] == ["还在"]
    assert chat.drain_all() == []


def test_drain_all_also_requeues_a_lost_mini_program_subscribe_drain(rt) -> None:  # noqa: ANN001
    from tasks import chat

    with db.connection_context():
        # given a due mini-program subscribe message (platform "wxa") whose drain job was lost
        rt.sender.enqueue("lost:wxa", "wxa", "openid-1", {"text": "开播提醒", "template_id": "t"}, schedule=False)
    assert rt.queue.count == 0
    # when the periodic safety net runs, then a drain is queued for that platform too
    assert chat.drain_all() == ["wxa"]
    assert [job.args for job in rt.queue.jobs] == [("wxa",)]


DRAIN_SCRIPT = """
import json
from models.db import db
from qianxing.settings import load_settings
from qianxing.wiring import bootstrap

sender = bootstrap(load_settings()).sender
with db.connection_context():
    print(json.dumps(sender.drain("telegram", deadline_s=10, batch=5).as_dict()))
"""


def test_two_worker_processes_draining_at_once_send_each_message_once(rt, settings, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    sender = make_sender(rt)
    with db.connection_context():
        for i in range(60):
            sender.enqueue(f"proc:{i}", TG, str(61_000 + i), Reply(text=f"#{i}"), schedule=False)
    env = {k: str(v) for k, v in settings.model_dump().items() if v is not None}
    env.update(PATH=os.environ.get("PATH", ""), TELEGRAM_RATE_PER_S="200", LOG_LEVEL="WARNING")
    root = Path(__file__).resolve().parents[2]
    # when two processes (own database connections, own Redis clients) drain together
    procs = [subprocess.Popen([sys.executable, "-c", DRAIN_SCRIPT], cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    stats = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    # then every chat got its message exactly once, and the two drains' counts add up
    counts = Counter(s.chat_id for s in telegram.sent)
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert sum(s["sent"] for s in stats) == 60
    assert all(r.state == "sent" and r.attempts == 1 for r in rows())


def test_send_replies_from_inside_a_running_event_loop(rt, telegram: FakeTelegramAPI) -> None:  # noqa: ANN001
    # given an adapter calling the sync API from an async handler (aiogram's polling loop)
    sender = make_sender(rt)

    async def handler() -> dict[str, str]:
        with db.connection_context():
            return sender.send_replies("loop-1", TG, "62001", [Reply(text="from a coroutine")])

    states = asyncio.run(handler())
    # then the pass ran on a thread of its own and the reply went out
    assert states == {"reply:telegram:loop-1:0": "sent"}
    assert [s.text for s in telegram.sent_to(62001)] == ["from a coroutine"]
