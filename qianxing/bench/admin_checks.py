"""The checks that prove the scratch shop of `qianxing bench admin` is consistent: counts, every
ledger transaction balanced, no row pointing nowhere, `settlement.verify` clean."""

from __future__ import annotations

from typing import Any

_ORPHANS = {
    # what: a count of rows pointing nowhere (each must be 0)
    "order_user": 'SELECT COUNT(*) FROM "order" o LEFT JOIN "user" u ON u.id = o.user_id WHERE u.id IS NULL',
    "order_sku": 'SELECT COUNT(*) FROM "order" o LEFT JOIN sku s ON s.id = o.sku_id WHERE s.id IS NULL',
    "order_seller": 'SELECT COUNT(*) FROM "order" o LEFT JOIN creator c ON c.id = o.seller_id '
                    "WHERE o.seller_id IS NOT NULL AND (c.id IS NULL OR c.code <> o.ref_code)",
    "creator_user": 'SELECT COUNT(*) FROM creator c LEFT JOIN "user" u ON u.id = c.user_id WHERE u.id IS NULL',
    "creator_parent": "SELECT COUNT(*) FROM creator c LEFT JOIN creator p ON p.id = c.parent_id "
                      "WHERE c.parent_id IS NOT NULL AND p.id IS NULL",
    # the grandparent is exactly the parent's parent (both NULL for roots and their children)
    "creator_grandparent": "SELECT COUNT(*) FROM creator c LEFT JOIN creator p ON p.id = c.parent_id "
                           "WHERE (c.parent_id IS NULL AND c.grandparent_id IS NOT NULL) OR "
                           "(c.parent_id IS NOT NULL AND ((p.parent_id IS NULL) <> (c.grandparent_id IS NULL) "
                           "OR p.parent_id <> c.grandparent_id))",
    "sku_product": "SELECT COUNT(*) FROM sku s LEFT JOIN product p ON p.id = s.product_id WHERE p.id IS NULL",
    "payment_order": 'SELECT COUNT(*) FROM payment p LEFT JOIN "order" o ON o.id = p.order_id '
                     "WHERE o.id IS NULL OR p.amount_fen <> o.amount_fen",
    "refund_order": 'SELECT COUNT(*) FROM refund r LEFT JOIN "order" o ON o.id = r.order_id '
                    "WHERE o.id IS NULL OR o.status <> 'refunded'",
    "posting_txn": "SELECT COUNT(*) FROM posting p LEFT JOIN ledger_transaction t ON t.id = p.txn_id "
                   "WHERE t.id IS NULL",
    "txn_order": 'SELECT COUNT(*) FROM ledger_transaction t LEFT JOIN "order" o ON o.id = t.order_id '
                 "WHERE t.order_id IS NOT NULL AND o.id IS NULL",
    "txn_without_postings": "SELECT COUNT(*) FROM ledger_transaction t "
                            "WHERE NOT EXISTS (SELECT 1 FROM posting p WHERE p.txn_id = t.id)",
    "settlement_order": 'SELECT COUNT(*) FROM settlement s LEFT JOIN "order" o ON o.id = s.order_id '
                        "WHERE o.id IS NULL",
    "commission_creator": "SELECT COUNT(*) FROM commission m LEFT JOIN creator c ON c.id = m.creator_id "
                          "WHERE c.id IS NULL",
    "event_order": "SELECT COUNT(*) FROM event e WHERE e.subject LIKE 'order:%%' AND NOT EXISTS "
                   '(SELECT 1 FROM "order" o WHERE o.id = CAST(substr(e.subject, 7) AS BIGINT))',
    # paid, delivered and refunded orders each carry a paid payment and a payment transaction
    "sold_without_payment": 'SELECT COUNT(*) FROM "order" o WHERE o.status IN (\'paid\', \'delivered\', '
                            "'refunded') AND NOT EXISTS (SELECT 1 FROM payment p WHERE p.order_id = o.id "
                            "AND p.state = 'paid') OR o.status IN ('paid', 'delivered', 'refunded') AND "
                            "NOT EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.key = 'payment:' || o.no)",
}
_COUNTED = ("user", "creator", "product", "sku", "order", "payment", "refund", "ledger_transaction", "posting",
            "event", "settlement", "commission")


def check() -> dict[str, Any]:
    """Counts and invariants of the built data: `problems` is empty on a consistent database."""
    from models import ledger, settlement
    from models.db import execute

    counts = {t: int(execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in _COUNTED}
    statuses = dict(execute('SELECT status, COUNT(*) FROM "order" GROUP BY status').fetchall())
    # Every transaction balances: the sum of its postings is 0.
    unbalanced = ledger.unbalanced_transactions()
    orphans = {name: int(execute(sql).fetchone()[0]) for name, sql in _ORPHANS.items()}
    verify = settlement.verify()
    problems = [f"{len(unbalanced)} unbalanced ledger transactions, e.g. {unbalanced[:3]}"] if unbalanced else []
    problems += [f"{name}: {n} rows" for name, n in orphans.items() if n]
    problems += [f"settlement.verify: {p}" for p in verify]
    return {"counts": counts, "statuses": {k: int(v) for k, v in sorted(statuses.items())},
            "unbalanced_transactions": len(unbalanced), "orphans": orphans, "problems": problems}
