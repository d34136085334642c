"""Taking commission back: reversal of refunded or fraudulent orders (pending lines reversed,
available ones clawed back, see the life cycle in models/settlement.py), and the operator's
risk hold and fraud flag on an order. Settling, releasing and `verify` are in
models/settlement.py; these writers take the same settlement lock.
"""

from __future__ import annotations

import hashlib

from models import events, ledger
from models.bulk import insert_rows
from models.db import db, execute, placeholders, utcnow
from models.settlement import LineKind, Settlement, SettleState, coupon_sum, lock, sums_by_creator


def reverse(order_ids: list[int], *, reason: str, actor: str) -> dict[str, int]:
    """Take back the commission of refunded or fraudulent orders: pending lines are reversed,
    available ones clawed back (the creator's available balance may go negative). Orders
    already reversed, or never settled, are skipped. Returns counts per outcome.

    Each entry reverses exactly what settlement posted: per creator the sum of their lines
    (coupon lines included), `expense:commission` the positive lines, `expense:discounts` what
    sellers funded of their own coupons (the platform funds the whole discount again)."""
    ids = sorted(set(order_ids))
    done = {SettleState.REVERSED.value: 0, SettleState.CLAWED_BACK.value: 0}
    if not ids:
        return done
    now = utcnow()
    stamp = Settlement.settled_at.db_value(now)
    with db.atomic():
        lock()
        rows = execute(f"SELECT order_id, state FROM settlement WHERE order_id IN ({placeholders(ids)}) "
                       "AND state IN (%s, %s) ORDER BY order_id",
                       (*ids, SettleState.PENDING.value, SettleState.AVAILABLE.value)).fetchall()
        for was, became, bucket, kind in (
                (SettleState.PENDING, SettleState.REVERSED, ledger.PENDING, "reversal"),
                (SettleState.AVAILABLE, SettleState.CLAWED_BACK, ledger.AVAILABLE, "clawback")):
            group = [oid for oid, state in rows if state == was.value]
            if not group:
                continue
            execute(f"UPDATE settlement SET state = %s, reversed_at = %s WHERE order_id IN "
                    f"({placeholders(group)})", (became.value, stamp, *group))
            sums = sums_by_creator(group)
            funded = coupon_sum(group)  # <= 0
            legs = {ledger.creator_account(c, bucket): v for c, v in sums.items()}
            legs[ledger.COMMISSION_EXPENSE] = -(sum(sums.values()) - funded)
            legs[ledger.DISCOUNT_EXPENSE] = -funded
            ledger.post_bulk(f"{kind}:o{group[0]}-{group[-1]}:{len(group)}", kind, legs,
                             memo=reason[:200], created_at=now)
            execute(*events.many_statement(f"commission.{became.value}", actor,
                                           [(f"order:{oid}", {"reason": reason}) for oid in group]))
            done[became.value] = len(group)
    return done


def void_lines(pairs: list[tuple[int, int]], *, reason: str, actor: str) -> dict[str, int]:
    """Void what these (order, creator) pairs earn (the risk engine's self-purchase finding):
    one commission line of kind `void`, amount minus the creator's net on the order, so that
    creator earns nothing on it while the order and its other beneficiaries stand. The
    settlement's payout shrinks by the same amount, and one ledger transaction (kind
    `risk_void`) per settlement state gives the money back to `expense:commission` out of the
    creator's pending bucket (or available, when the order was already released: that
    balance may go negative, a debt netted later). Pairs already voided, without a positive
    net, or whose order is not pending/available (reversed, never settled) are skipped;
    `reverse` afterwards balances (the void line is one of the creator's lines). Runs in the
    caller's transaction when there is one. Returns {"voided": pairs, "fen": total}."""
    wanted = set(pairs)
    done = {"voided": 0, "fen": 0}
    if not wanted:
        return done
    order_ids = sorted({o for o, _ in wanted})
    now = utcnow()
    stamp = Settlement.settled_at.db_value(now)
    with db.atomic():
        lock()
        rows = execute(
            f"SELECT c.order_id, c.creator_id, st.state, SUM(c.amount_fen), "
            f"SUM(CASE WHEN c.kind = %s THEN 1 ELSE 0 END) FROM commission c "
            f"JOIN settlement st ON st.order_id = c.order_id "
            f"WHERE c.order_id IN ({placeholders(order_ids)}) AND st.state IN (%s, %s) "
            f"GROUP BY c.order_id, c.creator_id, st.state ORDER BY c.order_id, c.creator_id",
            (LineKind.VOID.value, *order_ids, SettleState.PENDING.value, SettleState.AVAILABLE.value)).fetchall()
        todo = [(o, c, state, int(net)) for o, c, state, net, voided in rows
                if (o, c) in wanted and not voided and int(net) > 0]
        if not todo:
            return done
        insert_rows("commission", ("order_id", "creator_id", "kind", "amount_fen", "created_at"),
                    [(o, c, LineKind.VOID.value, -net, stamp) for o, c, _, net in todo])
        per_order: dict[int, int] = {}
        for o, _, _, net in todo:
            per_order[o] = per_order.get(o, 0) + net
        for amount in sorted(set(per_order.values())):
            group = [o for o, v in per_order.items() if v == amount]
            execute(f"UPDATE settlement SET payout_fen = payout_fen - %s WHERE order_id IN ({placeholders(group)})",
                    (amount, *group))
        digest = hashlib.sha1(repr([(o, c) for o, c, _, _ in todo]).encode(), usedforsecurity=False).hexdigest()[:12]
        for state, bucket in ((SettleState.PENDING.value, ledger.PENDING),
                              (SettleState.AVAILABLE.value, ledger.AVAILABLE)):
            part = [(o, c, net) for o, c, st, net in todo if st == state]
            if not part:
                continue
            legs: dict[str, int] = {}
            for _, c, net in part:
                account = ledger.creator_account(c, bucket)
                legs[account] = legs.get(account, 0) + net
            legs[ledger.COMMISSION_EXPENSE] = -sum(net for _, _, net in part)
            if ledger.post_bulk(f"risk_void:o{part[0][0]}-{part[-1][0]}:{len(part)}:{bucket}:{digest}", "risk_void",
                                legs, memo=reason[:200], created_at=now) is None:
                raise RuntimeError("risk void key already posted")  # rolls the void back
        execute(*events.many_statement("commission.voided", actor[:64], [
            (f"order:{o}", {"creator_id": c, "fen": net, "reason": reason[:200]}) for o, c, _, net in todo]))
        done["voided"], done["fen"] = len(todo), sum(net for _, _, _, net in todo)
    return done


def reverse_refunded(*, batch: int = 1000) -> int:
    """Reverse or claw back the commission of every refunded order that still carries some."""
    total = 0
    while True:
        ids = [r[0] for r in execute(
            'SELECT st.order_id FROM "order" o JOIN settlement st ON st.order_id = o.id '
            "WHERE o.status = %s AND st.state IN (%s, %s) ORDER BY st.order_id LIMIT %s",
            ("refunded", SettleState.PENDING.value, SettleState.AVAILABLE.value, batch)).fetchall()]
        if not ids:
            return total
        done = reverse(ids, reason="refund", actor="system:settlement")
        total += sum(done.values())
        if len(ids) < batch:
            return total




def hold(order_id: int, *, held: bool, actor: str, reason: str = "") -> bool:
    """Put an order under a risk hold (its commission stays pending through release) or lift
    the hold. Returns False when the flag already had that value. Raises NotFound."""
    from models.errors import NotFound
    from models.orders import Order

    with db.atomic():
        if not Order.select().where(Order.id == order_id).exists():
            raise NotFound(f"order {order_id} not found", code="order_not_found")
        changed = Order.update(risk_hold=held).where(
            (Order.id == order_id) & (Order.risk_hold != held)).execute()
        if changed:
            events.record("order.risk_hold" if held else "order.risk_released", f"order:{order_id}",
                          actor, reason=reason[:200])
    return bool(changed)


def flag_fraud(order_id: int, *, actor: str, reason: str) -> dict[str, int]:
    """A fraud finding: hold the order and take its commission back (reversed while pending,
    clawed back once available). Idempotent."""
    hold(order_id, held=True, actor=actor, reason=f"fraud: {reason}")
    return reverse([order_id], reason=f"fraud: {reason}", actor=actor)
