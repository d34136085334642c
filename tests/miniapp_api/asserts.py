"""Assertions shared by the API tests: the error shape, and "nothing was written"."""

from __future__ import annotations

from collections import Counter

from models.catalog import Sku
from models.db import db
from models.delivery import Voucher
from models.events import Event
from models.inventory import OrderItem
from models.ledger import LedgerTransaction, Posting
from models.orders import Order
from models.payments import Payment
from models.vault import CardKey


def snapshot(rt=None) -> dict:  # noqa: ANN001
    """Everything a request could write: row counts, key states, counter stock, queued jobs."""
    with db.connection_context():
        state = {
            model.__name__: model.select().count()
            for model in (Order, OrderItem, Payment, Event, LedgerTransaction, Posting, Voucher)
        }
        state["card_keys"] = Counter(k.state for k in CardKey.select(CardKey.state))
        state["stock"] = {s.code: s.stock for s in Sku.select(Sku.code, Sku.stock)}
    if rt is not None:
        state["queued"] = rt.queue.count
    return state


def assert_error(resp, status: int, code: str | None = None) -> dict:  # noqa: ANN001
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json, resp.get_data(as_text=True)
    error = resp.json["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"].strip()
    if code is not None:
        assert error["code"] == code, error
    return error
