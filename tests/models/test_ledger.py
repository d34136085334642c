"""The double-entry ledger: balanced, idempotent by key, and append-only in the database."""

from __future__ import annotations

import itertools

import peewee as pw
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import ledger
from models.db import db
from models.errors import InvalidInput
from models.ledger import LedgerTransaction, Leg, Posting

CASH, SALES, FEES = ledger.CASH_WECHATPAY, ledger.SALES, "expense:fees"


def test_a_balanced_transaction_is_posted_once_per_key(rt):
    with db.connection_context(), db.atomic():
        # when the same business key is posted twice (the second with other amounts)
        first = ledger.post("payment:QX1", "payment", [Leg(CASH, 990), Leg(SALES, -990)],
                            order_id=7)
        second = ledger.post("payment:QX1", "payment", [Leg(CASH, 5), Leg(SALES, -5)])
    with db.connection_context():
        # then only the first exists
        assert (first, second) == (True, False)
        assert LedgerTransaction.select().count() == 1 and Posting.select().count() == 2
        assert ledger.balance(CASH) == 990 and ledger.balance(SALES) == -990
        assert LedgerTransaction.get().order_id == 7


@pytest.mark.parametrize("legs", [
    [Leg(CASH, 100), Leg(SALES, -99)],
    [Leg(CASH, 100)],
    [],
    [Leg(CASH, 1.5), Leg(SALES, -1.5)],  # type: ignore[arg-type]
    [Leg(CASH, 0.5), Leg(SALES, -0.5)],  # type: ignore[arg-type]
])
def test_unbalanced_empty_or_fractional_legs_are_rejected(rt, legs):
    with db.connection_context():
        with pytest.raises(InvalidInput):
            ledger.post("bad:1", "payment", legs)
        assert LedgerTransaction.select().count() == 0 and Posting.select().count() == 0


@pytest.fixture
def one_txn(rt) -> None:  # noqa: ANN001
    with db.connection_context(), db.atomic():
        ledger.post("payment:QX2", "payment", [Leg(CASH, 500), Leg(SALES, -500)])


@pytest.mark.parametrize("sql", [
    "UPDATE posting SET amount_fen = amount_fen + 1",
    "DELETE FROM posting",
    "UPDATE ledger_transaction SET memo = 'changed'",
    "DELETE FROM ledger_transaction",
])
def test_the_database_refuses_to_change_or_delete_ledger_rows(one_txn, sql):
    # given a posted transaction; when someone edits the tables directly
    with db.connection_context():
        with pytest.raises(pw.DatabaseError, match="append-only"), db.atomic():
            db.execute_sql(sql)
        # then the rows are untouched
        assert ledger.balance(CASH) == 500 and ledger.balance(SALES) == -500
        assert LedgerTransaction.get().memo == ""
        assert ledger.unbalanced_transactions() == []


def test_the_model_api_cannot_change_ledger_rows_either(one_txn):
    with db.connection_context():
        with pytest.raises(pw.DatabaseError), db.atomic():
            Posting.update(amount_fen=0).execute()
        with pytest.raises(pw.DatabaseError), db.atomic():
            LedgerTransaction.delete().execute()
        assert Posting.select().count() == 2


_keys = itertools.count()
amounts = st.integers(min_value=-10**9, max_value=10**9)
accounts = st.sampled_from([CASH, SALES, FEES, "liability:commission", "asset:bank"])


@st.composite
def balanced_legs(draw: st.DrawFn) -> list[Leg]:
    values = draw(st.lists(amounts, min_size=1, max_size=5))
    names = draw(st.lists(accounts, min_size=len(values) + 1, max_size=len(values) + 1))
    legs = [Leg(a, v) for a, v in zip(names, values, strict=False)]
    return [*legs, Leg(names[-1], -sum(values))]


@h_settings(max_examples=30, deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=st.lists(st.tuples(balanced_legs(), st.booleans()), min_size=1, max_size=8))
def test_random_balanced_postings_keep_the_books_balanced(rt, txns):
    # given random balanced transactions, some of them replayed under the same key
    with db.connection_context():
        before = {a: ledger.balance(a) for a in [CASH, SALES, FEES, "liability:commission",
                                                  "asset:bank"]}
        expected = dict(before)
        for legs, replay in txns:
            key = f"prop:{next(_keys)}"
            with db.atomic():
                assert ledger.post(key, "test", legs)
                if replay:
                    assert not ledger.post(key, "test", legs)
            for leg in legs:
                expected[leg.account] += leg.amount_fen
        # then every transaction balances and the balances sum to zero
        assert ledger.unbalanced_transactions() == []
        assert {a: ledger.balance(a) for a in expected} == expected
        total = Posting.select(pw.fn.SUM(Posting.amount_fen)).scalar()
        assert int(total or 0) == 0
