"""Batch isolation (models/failures.py): whatever items of a batch fail, exactly those are set
aside and every other item is processed once."""

from __future__ import annotations

import peewee as pw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import failures
from models.db import db
from models.failures import ItemFailure


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 40), data=st.data())
def test_exactly_the_failing_items_are_set_aside(rt, size, data):
    # given a batch in which any subset of items fails whenever it is part of a run
    items = list(range(1, size + 1))
    bad = set(data.draw(st.sets(st.sampled_from(items), max_size=size) if items else st.just(set())))
    processed: list[int] = []
    runs = []

    def run(chunk: list[int]) -> None:  # all or nothing, like one transaction
        runs.append(len(chunk))
        if bad.intersection(chunk):
            raise ValueError(f"item {min(bad.intersection(chunk))} is bad")
        processed.extend(chunk)

    with db.connection_context():
        ItemFailure.delete().execute()
        # when the batch runs isolated
        parked = failures.isolate("test", items, run, intervals=(5,))
        # then exactly the bad items are parked, each with its own reason, and the rest ran once
        assert sorted(parked) == sorted(bad)
        assert sorted(processed) == sorted(set(items) - bad)
        assert failures.parked("test", items) == bad
        for row in ItemFailure.select():
            assert row.error == f"ValueError: item {row.item_id} is bad"
        # and a clean batch is one run; each bad item costs at most two runs per halving
        depth = max(1, (size - 1).bit_length()) if size else 0
        assert len(runs) <= (1 if size else 0) + 2 * len(bad) * depth


def test_a_database_outage_is_not_blamed_on_an_item(rt):
    # given a batch whose run fails because the database is unreachable
    def run(chunk: list[int]) -> None:
        raise pw.OperationalError("server closed the connection unexpectedly")

    # when it runs isolated, then the error propagates and nothing is parked
    with db.connection_context():
        with pytest.raises(pw.OperationalError):
            failures.isolate("test", [1, 2, 3], run, intervals=(5,))
        assert not ItemFailure.select().exists()


def test_a_recovered_item_that_fails_again_starts_a_new_count(rt):
    with db.connection_context():
        # given an item that failed twice and then recovered
        failures.park("test", 7, "first", (5, 5))
        failures.park("test", 7, "second", (5, 5))
        assert failures.resolve("test", [7]) == 1
        # when it fails again
        row = failures.park("test", 7, "third", (5, 5))
        # then its count starts over and it is set aside again
        assert row.attempts == 1 and row.resolved_at is None and failures.parked("test", [7]) == {7}
