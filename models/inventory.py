"""Stock: reserve at order time, release on expiry, sell on delivery, and what is on the shelf.

Card keys are claimed row by row (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite transactions are
IMMEDIATE so writers are serialised); counter stock is one conditional UPDATE that cannot go
below zero. Both happen inside the order's transaction, so a failure leaves nothing behind.
"""

from __future__ import annotations

import peewee as pw

from models import events
from models.catalog import Kind, Sku, components
from models.db import BaseModel, execute, execute_batch, for_update, is_postgres, placeholders, utcnow
from models.errors import OutOfStock
from models.vault import CardKey, KeyState


class OrderItem(BaseModel):
    """What an order holds reserved: one row per component SKU (bundles expand)."""

    order_id = pw.BigIntegerField()  # led by the (order_id, sku) unique index
    sku = pw.ForeignKeyField(Sku, on_delete="RESTRICT", index=False)
    kind = pw.CharField(max_length=16)
    quantity = pw.IntegerField()

    class Meta:
        indexes = ((("order_id", "sku"), True),)


def reserve(order_id: int, sku: Sku, quantity: int,
            then: tuple[str, tuple] | None = None) -> tuple | None:
    """Reserve `quantity` units of `sku` for an order, all or nothing.

    Components are reserved in SKU id order so two bundles never lock in opposite orders.
    `then` is (SQL select-list expressions, parameters), evaluated after the reservation in the
    same round trip; their values are returned. Raises OutOfStock; the caller's transaction then
    rolls everything back.
    """
    statements: list[tuple[str, tuple | list]] = []
    counts: list[str] = []
    params: list = []
    needs: list[tuple[Sku, int]] = []
    for component, per_unit in components(sku):
        need = per_unit * quantity
        if component.kind == Kind.CARD_KEY:
            statements.append((_CLAIM_KEYS + for_update("FOR UPDATE SKIP LOCKED") + ")", (
                KeyState.RESERVED.value, order_id, utcnow_db(), component.id,
                KeyState.AVAILABLE.value, need)))
            statements.append((_INSERT_ITEM, (order_id, component.id, component.kind, need)))
            counts.append("(SELECT COUNT(*) FROM card_key WHERE order_id = %s AND sku_id = %s)")
        elif is_postgres():
            # The item row exists only if the conditional stock update matched.
            statements.append((
                "WITH s AS (UPDATE sku SET stock = stock - %s WHERE id = %s AND stock >= %s "
                "RETURNING id) INSERT INTO order_item (order_id, sku_id, kind, quantity) "
                "SELECT %s, id, %s, %s FROM s",
                (need, component.id, need, order_id, component.kind, need)))
            counts.append("(SELECT COALESCE(SUM(quantity), 0) FROM order_item "
                          "WHERE order_id = %s AND sku_id = %s)")
        else:  # SQLite: no round trips to save
            if not execute("UPDATE sku SET stock = stock - %s WHERE id = %s AND stock >= %s",
                           (need, component.id, need)).rowcount:
                raise OutOfStock(f"{component.name} is sold out")
            execute(_INSERT_ITEM, (order_id, component.id, component.kind, need))
            continue
        params += [order_id, component.id]
        needs.append((component, need))
    columns = counts + ([then[0]] if then else [])
    if not columns:
        return None
    statements.append(("SELECT " + ", ".join(columns), [*params, *(then[1] if then else ())]))
    row = execute_batch(statements).fetchone()
    for (component, need), got in zip(needs, row, strict=False):
        if got < need:
            raise OutOfStock(f"{component.name} is sold out")
    return tuple(row[len(needs):])


_INSERT_ITEM = "INSERT INTO order_item (order_id, sku_id, kind, quantity) VALUES (%s, %s, %s, %s)"
# Candidates come from the partial index on available keys; SKIP LOCKED (PostgreSQL) lets
# concurrent buyers claim different keys instead of queueing behind one another.
_CLAIM_KEYS = (
    "UPDATE card_key SET state = %s, order_id = %s, reserved_at = %s WHERE id IN "
    "(SELECT id FROM card_key WHERE sku_id = %s AND state = %s LIMIT %s"
)


def utcnow_db() -> object:
    return CardKey.reserved_at.db_value(utcnow())


def release(order_id: int) -> None:
    """Put an unpaid order's reservation back on the shelf. The caller guarantees, through the
    order's conditional status change, that this runs once per order."""
    for item in OrderItem.select().where(OrderItem.order_id == order_id):
        if item.kind == Kind.CARD_KEY:
            CardKey.update(state=KeyState.AVAILABLE, order_id=None, reserved_at=None).where(
                (CardKey.order_id == order_id) & (CardKey.state == KeyState.RESERVED)
            ).execute()
        else:
            Sku.update(stock=Sku.stock + item.quantity).where(Sku.id == item.sku_id).execute()
    # Items describe what the order holds now; a revived order reserves (and records) anew.
    OrderItem.delete().where(OrderItem.order_id == order_id).execute()


def items_of(order_id: int) -> list[OrderItem]:
    return list(
        OrderItem.select(OrderItem, Sku)
        .join(Sku)
        .where(OrderItem.order_id == order_id)
        .order_by(OrderItem.sku)
    )


def skus_of(order_ids: list[int]) -> list[int]:
    """The SKUs (components) these orders hold."""
    rows = execute(f"SELECT DISTINCT sku_id FROM order_item WHERE order_id IN ({placeholders(order_ids)})",
                   order_ids).fetchall()
    return sorted(r[0] for r in rows)


def available(skus: list[Sku]) -> dict[int, int]:
    """Units that can be sold now, per SKU id (bundles: limited by their scarcest component)."""
    result: dict[int, int] = {}
    key_skus = [s.id for s in skus if s.kind == Kind.CARD_KEY]
    bundle_parts: dict[int, list[tuple[Sku, int]]] = {
        s.id: components(s) for s in skus if s.kind == Kind.BUNDLE
    }
    for parts in bundle_parts.values():
        key_skus.extend(c.id for c, _ in parts if c.kind == Kind.CARD_KEY)
    counts: dict[int, int] = {}
    if key_skus:
        rows = (
            CardKey.select(CardKey.sku, pw.fn.COUNT(CardKey.id))
            .where(CardKey.sku.in_(sorted(set(key_skus))) & (CardKey.state == KeyState.AVAILABLE))
            .group_by(CardKey.sku)
            .tuples()
        )
        counts = dict(rows)

    def units(component: Sku) -> int:
        return counts.get(component.id, 0) if component.kind == Kind.CARD_KEY else component.stock

    for s in skus:
        if s.kind == Kind.BUNDLE:
            parts = bundle_parts[s.id]
            result[s.id] = min((units(c) // q for c, q in parts), default=0)
        else:
            result[s.id] = units(s)
    return result


def check_low_stock(sku_id: int, default_threshold: int) -> bool:
    """Emit one stock.low event when a SKU falls under its threshold; re-arm after restock.
    Returns True when an event was written."""
    sku = Sku.get_by_id(sku_id)
    threshold = sku.low_stock_threshold if sku.low_stock_threshold is not None else default_threshold
    level = available([sku])[sku.id]
    if level < threshold:
        flipped = (
            Sku.update(low_stock_flag=True)
            .where((Sku.id == sku.id) & (Sku.low_stock_flag == False))  # noqa: E712
            .execute()
        )
        if flipped:
            events.record("stock.low", f"sku:{sku.id}", "system", available=level,
                          threshold=threshold, sku=sku.code)
            return True
    elif sku.low_stock_flag:
        Sku.update(low_stock_flag=False).where(Sku.id == sku.id).execute()
    return False
