"""Token buckets in Redis (one Lua call per batch): reservation semantics, the shared bucket
across chats, pauses, and atomicity under concurrent takers (as several processes would be)."""

from __future__ import annotations

import threading

import pytest

from bots.buckets import Bucket, Buckets, Limits


@pytest.fixture
def buckets(rt) -> Buckets:  # noqa: ANN001
    return Buckets(rt.redis)


def test_take_returns_how_long_to_wait_after_the_burst(buckets: Buckets) -> None:
    # given 10 tokens a second and room for 3
    b = Bucket("qianxing:tb:test:a", 10.0, 3)
    # when 6 messages take a token one after the other
    waits = [buckets.take(b) for _ in range(6)]
    # then the burst goes at once and the rest are spaced 0.1 s apart (reserved, not refused)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert [round(w, 2) for w in waits[3:]] == pytest.approx([0.1, 0.2, 0.3], abs=0.011)


def test_a_moment_beyond_max_wait_is_not_taken(buckets: Buckets) -> None:
    b = Bucket("qianxing:tb:test:b", 2.0, 1)
    assert buckets.take(b) == 0.0
    # when the next moment (0.5 s away) is beyond max_wait, it is reported but not reserved
    # (waits are counted from each call: on a loaded host a few ms pass between the calls)
    assert buckets.take(b, max_wait=0.1) == pytest.approx(0.5, abs=0.05)
    assert buckets.take(b, max_wait=0.1) == pytest.approx(0.5, abs=0.05)
    # and a caller willing to wait gets exactly that moment, and the next one 0.5 s later
    assert buckets.take(b) == pytest.approx(0.5, abs=0.05)
    assert buckets.take(b) == pytest.approx(1.0, abs=0.05)


def test_a_waiting_chat_does_not_hold_up_other_chats(buckets: Buckets) -> None:
    shared = Bucket("qianxing:tb:test:all", 100.0, 1, shared=True)
    busy = Bucket("qianxing:tb:test:chat:busy", 1.0, 1)
    # given a batch: three messages to a busy chat (1/s) then one each to two other chats
    requests = [[shared, busy]] * 3 + [[shared, Bucket("qianxing:tb:test:chat:x", 1.0, 1)],
                                       [shared, Bucket("qianxing:tb:test:chat:y", 1.0, 1)]]
    taken = buckets.take_many(requests, max_wait=1.5)
    # then the busy chat's messages go at 0, 1 s (the third is beyond 1.5 s: not reserved),
    # and the other chats go right away through the shared bucket (0.01 s apart), not after 1 s
    assert [ok for ok, _ in taken] == [True, True, False, True, True]
    waits = [round(w, 2) for _, w in taken]
    assert waits[0] == 0.0 and waits[1] == pytest.approx(1.0, abs=0.02) and waits[2] > 1.5
    assert waits[3] <= 0.03 and waits[4] <= 0.03


def test_a_chat_keeps_its_order_when_one_message_cannot_be_reserved(buckets: Buckets) -> None:
    chat = Bucket("qianxing:tb:test:chat:z", 1.0, 1)
    taken = buckets.take_many([[chat], [chat], [chat]], max_wait=0.5)
    # then only the first goes; the later ones are not reserved either (no overtaking)
    assert [ok for ok, _ in taken] == [True, False, False]


def test_pause_shuts_a_bucket_for_retry_after(buckets: Buckets) -> None:
    b = Bucket("qianxing:tb:test:p", 100.0, 5)
    buckets.pause(b, 2.0)
    assert buckets.take(b, max_wait=0) == pytest.approx(2.0, abs=0.01)
    assert buckets.take(b) == pytest.approx(2.0, abs=0.01)


def test_concurrent_takers_never_lose_a_reservation(rt) -> None:  # noqa: ANN001
    # given 8 takers (own Redis clients, as processes would be) on one 100/s bucket
    b = Bucket("qianxing:tb:test:c", 100.0, 1)
    got: list[float] = []
    lock = threading.Lock()

    def taker() -> None:
        mine = Buckets(type(rt.redis).from_url(rt.settings.REDIS_URL))
        for _ in range(25):
            wait = mine.take(b)
            with lock:
                got.append(wait)

    def redis_now() -> float:
        sec, usec = rt.redis.time()
        return sec + usec / 1e6

    start = redis_now()
    threads = [threading.Thread(target=taker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = redis_now() - start
    # then the 200 reservations moved the bucket exactly 200 intervals on from the first one:
    # no two takers were handed the same moment (a lost update would leave it short)
    tat = int(rt.redis.get(b.key)) / 1e6
    assert len(got) == 200
    assert 2.0 - 1e-6 <= tat - start <= 2.0 + elapsed
    assert max(got) >= 2.0 - 0.01 - elapsed


def test_limits_pick_the_buckets_of_a_message(settings) -> None:  # noqa: ANN001
    limits = Limits.from_settings(settings)
    private = limits.for_message("telegram", "42")
    group = limits.for_message("telegram", "-1001", "group")
    paid = limits.for_message("telegram", "42", paid=True)
    assert [b.key for b in private] == ["qianxing:tb:telegram:all", "qianxing:tb:telegram:chat:42"]
    assert [b.key for b in group][-1] == "qianxing:tb:telegram:group:-1001"
    assert group[-1].rate == pytest.approx(settings.TELEGRAM_RATE_PER_GROUP_PER_MIN / 60)
    assert paid[0].key == "qianxing:tb:telegram:paid" and paid[0].rate == settings.TELEGRAM_PAID_BROADCAST_PER_S
    assert private[0].shared and not private[1].shared
    assert [b.key for b in limits.for_message("wechat", "openid")] == ["qianxing:tb:wechat:all"]
    assert limits.for_message("console", "ann") == []
