"""`qianxing live verify-draw` recomputes a lottery from public data only: the app is served on
127.0.0.1 (the session's live server) and the command reads its public API over HTTP, like
anyone else would. A published value that does not match is a MISMATCH with exit status 1."""

from __future__ import annotations

import datetime as dt

from models.db import db, utcnow
from models.lottery import Lottery, LotteryWinner
from qianxing.cli.live import verify
from tasks import lottery as lottery_jobs
from tests.factories import LOTTERY_START, lottery_session, reserve_many

AFTER_START = LOTTERY_START + dt.timedelta(seconds=10)


def drawn(shop, *, threshold: int = 3, prizes: int = 2, reservations: int = 7) -> int:  # noqa: ANN001
    session, _ = lottery_session(shop, threshold=threshold, prizes=prizes)
    reserve_many(session.id, reservations)
    lottery_jobs.run_draws(now=utcnow() + AFTER_START)
    return session.id


def test_verify_draw_recomputes_the_winners_over_http(app, cli, shop, settings):
    # given a drawn lottery served by the app
    session_id = drawn(shop)
    with db.connection_context():
        winners = [w.reservation_id for w in LotteryWinner.select().order_by(LotteryWinner.rank)]
    # when anyone runs verify-draw against the public URL
    result = cli("live", "verify-draw", str(session_id), "--url", settings.PUBLIC_BASE_URL)
    # then it says OK, with the winners
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK") and ", ".join(map(str, winners)) in result.output


def test_a_below_threshold_lottery_verifies_as_no_draw(app, cli, shop):
    session_id = drawn(shop, threshold=5, prizes=1, reservations=2)
    result = cli("live", "verify-draw", str(session_id))  # PUBLIC_BASE_URL by default
    assert result.exit_code == 0, result.output
    assert "below_threshold" in result.output


def test_a_seed_that_does_not_open_the_published_hash_is_a_mismatch(app, cli, shop):
    # given a drawn lottery whose revealed seed was replaced afterwards
    session_id = drawn(shop)
    with db.connection_context():
        Lottery.update(seed="00" * 32).where(Lottery.session == session_id).execute()
    # when verified / then MISMATCH and exit status 1
    result = cli("live", "verify-draw", str(session_id))
    assert result.exit_code == 1 and result.output.startswith("MISMATCH"), result.output
    assert "seed_hash" in result.output


def test_winners_that_are_not_the_draw_are_a_mismatch(app, cli, shop):
    # given a drawn lottery whose first winner was swapped for a reservation that did not win
    session_id = drawn(shop)
    with db.connection_context():
        first = LotteryWinner.get(LotteryWinner.rank == 1)
        won = {w.reservation_id for w in LotteryWinner.select()}
        loser = next(r for r in range(first.reservation_id - 10, first.reservation_id + 10)
                     if r not in won and r > 0)
        LotteryWinner.update(reservation_id=loser).where(LotteryWinner.id == first.id).execute()
    result = cli("live", "verify-draw", str(session_id))
    assert result.exit_code == 1 and "the winners are" in result.output, result.output


def test_a_pending_lottery_or_an_unknown_session_is_not_ok(app, cli, shop):
    session, _ = lottery_session(shop)
    pending = cli("live", "verify-draw", str(session.id))
    assert pending.exit_code == 1 and "no draw to check" in pending.output
    unknown = cli("live", "verify-draw", str(session.id + 1))
    assert unknown.exit_code == 1 and "lottery_not_found" not in unknown.output and "404" in unknown.output


def test_a_forged_reservation_list_is_caught(client, shop):
    # given the public data of a drawn lottery, read through an injected fetch over the test client
    session_id = drawn(shop)

    def fetch(path: str, params: dict) -> dict:
        return client.get(path, query_string=params).json

    assert verify(session_id, fetch)[1] == []

    # when a mirror serves the list with one reservation added
    def forged(path: str, params: dict) -> dict:
        answer = fetch(path, params)
        if path.endswith("/reservations") and answer["next_after"] is None:
            answer["ids"] = [*answer["ids"], 10**9]
        return answer

    # then the list's hash and length do not match what was published
    problems = verify(session_id, forged)[1]
    assert any("hashes to" in p for p in problems) and any("has 8 reservations" in p for p in problems)
