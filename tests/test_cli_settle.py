"""`qianxing settle` and the settlement half of `qianxing ledger verify`, through click against
the test database and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from models import ledger
from models.db import db
from models.live import start_live
from models.orders import Order
from qianxing import wiring
from qianxing.cli import main
from tests.models.test_settlement import (
    assert_books_clean,
    bucket,
    chain,
    make_sku,
    paid_order,
    state_of,
)


@pytest.fixture
def cli(settings, monkeypatch, rt) -> Iterator:  # noqa: ANN001
    for name, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(name, str(value))

    def invoke(*args: str):  # noqa: ANN202
        wiring.reset()
        return CliRunner().invoke(main, list(args))

    try:
        yield invoke
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


def test_settle_settles_everything_with_a_summary_and_again_nothing(cli, rt, shop):
    # given three paid orders in a two-creator team
    up1, seller = chain(2, 1)
    sku = make_sku(shop)
    ids = [paid_order(seller, sku) for _ in range(3)]
    # when the operator settles
    first = cli("settle")
    # then all three are settled and the summary says so
    assert first.exit_code == 0, first.output
    assert "settled 3 orders: 6 commission lines, 4650 fen pending, 1 batches" in first.output
    assert [state_of(i) for i in ids] == ["pending"] * 3
    # and a second run finds nothing to do
    second = cli("settle")
    assert second.exit_code == 0 and "settled 0 orders" in second.output
    assert bucket(seller, "pending") == 3000 and bucket(up1, "pending") == 1650
    assert_books_clean()


def test_settle_live_release_and_reverse_refunds(cli, rt, shop):
    (seller,) = chain(1)
    sku = make_sku(shop)
    with db.connection_context():
        live = start_live(seller)
    in_live = paid_order(seller, sku, live_id=live.id)
    other = paid_order(seller, sku)
    # when only the live session is settled
    result = cli("settle", "--live", str(live.id))
    assert result.exit_code == 0 and "settled 1 orders" in result.output, result.output
    assert (state_of(in_live), state_of(other)) == ("pending", None)
    # when the other order was refunded and the operator settles with both extras
    with db.connection_context():
        Order.update(status="refunded").where(Order.id == in_live).execute()
    result = cli("settle", "--release", "--reverse-refunds")
    # then the rest is settled, nothing is due for release yet, the refund is reversed
    assert result.exit_code == 0, result.output
    assert "settled 1 orders" in result.output and "released 0 orders" in result.output
    assert "reversed 1 refunded orders" in result.output
    assert (state_of(in_live), state_of(other)) == ("reversed", "pending")
    assert_books_clean()


def test_ledger_verify_fails_when_commission_and_ledger_disagree(cli, rt, shop):
    # given settled commission that verifies
    (seller,) = chain(1)
    paid_order(seller, make_sku(shop))
    assert cli("settle").exit_code == 0
    ok = cli("ledger", "verify")
    assert ok.exit_code == 0 and ok.output.strip() == "ledger balanced"
    # when a balanced but wrong entry lands in the seller's pending bucket
    with db.connection_context(), db.atomic():
        ledger.post("stray:cli", "manual", [ledger.Leg(ledger.creator_account(seller.id, "pending"), -7),
                                            ledger.Leg(ledger.COMMISSION_EXPENSE, 7)])
    # then verify fails and names the account
    bad = cli("ledger", "verify")
    assert bad.exit_code == 1
    assert "settlement does not match the ledger" in bad.output
    assert f"creator:{seller.id}:pending" in bad.output
