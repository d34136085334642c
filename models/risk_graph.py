"""What a risk case is made of, for its decision and its evidence page (issue 15): the hits
linked to the case, the orders and withdrawals they name, the identities those orders were
placed with (and the other users sharing each: the "IP and device neighbours"), and a small
graph of it all in ECharts' graph format.

A case's orders: the subjects of its order hits, plus the `orders` lists in the evidence of
its creator-scope hits (refund abuse names the creator's pending orders). Its withdrawals: the
subjects of its withdrawal hits. Identities are shown as the coarse network and the first 8
characters of the keyed hashes; raw IPs, device ids and phone numbers are never stored.
Everything is bounded (orders, identities, neighbours, graph nodes), so a huge case still
renders in a few indexed queries. The reads a decision needs are here too: the commission still
owed on the orders, the orders another open case names, the orders an operator held by hand.
"""

from __future__ import annotations

import json
from typing import Any

from models.db import execute, placeholders
from models.risk_tables import CaseState

MAX_ORDERS = 500  # orders a case acts on and shows
MAX_IDENTITIES = 20
MAX_NEIGHBOURS = 10  # other users shown per identity
MAX_NODES = 60
CATEGORIES = ("creator", "buyer", "order", "ip", "device", "phone", "payer")
SHORT = 8


def hits_of(case_id: int) -> list[dict[str, Any]]:
    rows = execute(
        "SELECT h.id, h.code, r.version, h.weight, h.subject_kind, h.subject_id, h.period, h.creator_id, "
        "h.evidence, h.created_at FROM risk_case_hit ch JOIN risk_hit h ON h.id = ch.hit_id "
        "LEFT JOIN risk_rule r ON r.id = h.rule_id WHERE ch.case_id = %s ORDER BY h.id", (case_id,)).fetchall()
    found = []
    for hid, code, version, weight, kind, subject, period, creator_id, ev, created in rows:
        try:
            parsed = json.loads(ev or "{}")
        except ValueError:
            parsed = {}
        found.append({"id": hid, "code": code, "version": version, "weight": weight, "subject_kind": kind,
                      "subject_id": subject, "subject": f"{kind}:{subject}", "period": period,
                      "creator_id": creator_id, "evidence": parsed if isinstance(parsed, dict) else {},
                      "created_at": created})
    return found


def order_ids_of(hits: list[dict[str, Any]]) -> list[int]:
    ids: set[int] = set()
    for hit in hits:
        if hit["subject_kind"] == "order":
            ids.add(int(hit["subject_id"]))
        elif hit["subject_kind"] == "creator":
            ids.update(int(o) for o in hit["evidence"].get("orders") or () if isinstance(o, int))
    return sorted(ids)[:MAX_ORDERS]


def withdrawal_ids_of(hits: list[dict[str, Any]]) -> list[int]:
    return sorted({int(h["subject_id"]) for h in hits if h["subject_kind"] == "withdrawal"})


def orders(order_ids: list[int], creator_id: int | None) -> list[dict[str, Any]]:
    if not order_ids:
        return []
    rows = execute(
        "SELECT o.id, o.no, o.amount_fen, o.status, o.user_id, o.seller_id, o.risk_hold, st.state, "
        "st.payout_fen, o.paid_at, (SELECT COALESCE(SUM(c.amount_fen), 0) FROM commission c "
        "WHERE c.order_id = o.id AND c.creator_id = %s) "
        f'FROM "order" o LEFT JOIN settlement st ON st.order_id = o.id WHERE o.id IN ({placeholders(order_ids)}) '
        "ORDER BY o.id", (creator_id or 0, *order_ids)).fetchall()
    return [{"id": r[0], "no": r[1], "amount_fen": r[2], "status": r[3], "buyer": r[4], "seller": r[5],
             "risk_hold": bool(r[6]), "settlement": r[7], "commission_fen": int(r[8] or 0), "paid_at": r[9],
             "creator_fen": int(r[10] or 0)} for r in rows]


def withdrawals(withdrawal_ids: list[int]) -> list[dict[str, Any]]:
    if not withdrawal_ids:
        return []
    rows = execute("SELECT id, no, amount_fen, state, requested_at FROM withdrawal "
                   f"WHERE id IN ({placeholders(withdrawal_ids)}) ORDER BY id", withdrawal_ids).fetchall()
    return [{"id": r[0], "no": r[1], "amount_fen": r[2], "state": r[3], "requested_at": r[4]} for r in rows]


def held_fen(order_ids: list[int]) -> int:
    """Commission still waiting on the held orders among these (pending settlement)."""
    if not order_ids:
        return 0
    return int(execute(
        'SELECT COALESCE(SUM(st.payout_fen), 0) FROM settlement st JOIN "order" o ON o.id = st.order_id '
        f"WHERE st.state = 'pending' AND o.risk_hold AND o.id IN ({placeholders(order_ids)})",
        order_ids).fetchone()[0])


# ---- identities and neighbours -----------------------------------------------------------------

_NEIGHBOURS = {
    "ip": "SELECT DISTINCT user_id FROM risk_signal WHERE ip_hash = %s AND user_id IS NOT NULL LIMIT %s",
    "device": "SELECT DISTINCT user_id FROM risk_signal WHERE device_hash = %s AND user_id IS NOT NULL LIMIT %s",
    "payer": "SELECT DISTINCT user_id FROM risk_signal WHERE payer_hash = %s AND user_id IS NOT NULL LIMIT %s",
    "phone": "SELECT user_id FROM risk_user WHERE phone_hash = %s LIMIT %s",
}


def identities(order_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The identities the orders were placed and paid with (and their buyers' phones): kind,
    label (short hash; the IP's /24 too), the case's orders and buyers using it, and up to
    MAX_NEIGHBOURS users sharing it (`more` when there are others)."""
    ids = [o["id"] for o in order_rows]
    if not ids:
        return []
    buyer_of = {o["id"]: o["buyer"] for o in order_rows}
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def add(kind: str, full: str | None, order_id: int | None, user_id: int | None, net: str | None = None) -> None:
        if not full:
            return
        entry = found.get((kind, full))
        if entry is None:
            if len(found) >= MAX_IDENTITIES:
                return
            label = full[:SHORT] if kind != "ip" or not net else f"{net}.x · {full[:SHORT]}"
            entry = found[(kind, full)] = {"kind": kind, "label": label, "hash": full[:SHORT], "net": net,
                                           "orders": [], "buyers": [], "users": [], "more": False}
        if order_id is not None and order_id not in entry["orders"]:
            entry["orders"].append(order_id)
        if user_id is not None and user_id not in entry["buyers"]:
            entry["buyers"].append(user_id)

    signals = execute("SELECT order_id, user_id, ip_hash, ip_net, device_hash, payer_hash FROM risk_signal "
                      f"WHERE order_id IN ({placeholders(ids)}) ORDER BY order_id", ids).fetchall()
    for order_id, user_id, ip_hash, ip_net, device, payer in signals:
        buyer = user_id if user_id is not None else buyer_of.get(order_id)
        add("ip", ip_hash, order_id, buyer, ip_net)
        add("device", device, order_id, buyer)
        add("payer", payer, order_id, buyer)
    buyers = sorted({o["buyer"] for o in order_rows if o["buyer"] is not None})
    if buyers:
        for user_id, phone_hash, seg in execute(
                f"SELECT user_id, phone_hash, phone_seg FROM risk_user WHERE user_id IN ({placeholders(buyers)}) "
                "AND phone_hash IS NOT NULL ORDER BY user_id", buyers).fetchall():
            add("phone", phone_hash, None, user_id)
            entry = found.get(("phone", phone_hash))
            if entry is not None and seg:
                entry["label"] = f"{seg}**** · {phone_hash[:SHORT]}"
                entry["net"] = seg
    for (kind, full), entry in found.items():
        users = [int(r[0]) for r in execute(_NEIGHBOURS[kind], (full, MAX_NEIGHBOURS + 1)).fetchall()]
        entry["more"] = len(users) > MAX_NEIGHBOURS
        entry["users"] = sorted(users[:MAX_NEIGHBOURS])
    return list(found.values())


# ---- the graph ------------------------------------------------------------------------------------


def graph(creator: dict[str, Any] | None, order_rows: list[dict[str, Any]],
          idents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{"nodes", "links", "categories"} for an ECharts graph series (node `category` is a
    category name): the creator, the orders, their buyers, the identities, the neighbours.
    At most MAX_NODES nodes, added in that order of importance."""
    nodes: dict[str, dict[str, Any]] = {}
    links: list[dict[str, Any]] = []

    def node(node_id: str, name: str, category: str) -> bool:
        if node_id in nodes:
            return True
        if len(nodes) >= MAX_NODES:
            return False
        nodes[node_id] = {"id": node_id, "name": name, "category": category}
        return True

    def link(source: str, target: str, label: str) -> None:
        if source in nodes and target in nodes:
            links.append({"source": source, "target": target, "label": label})

    creator_node = None
    if creator is not None:
        creator_node = f"creator:{creator['id']}"
        node(creator_node, creator.get("name") or creator.get("code") or f"达人 {creator['id']}", "creator")
    for o in order_rows[:20]:
        if node(f"order:{o['id']}", o["no"], "order") and creator_node and o["seller"] == creator["id"]:
            link(f"order:{o['id']}", creator_node, "卖家")
    for o in order_rows[:20]:
        if o["buyer"] is not None and node(f"user:{o['buyer']}", f"用户 {o['buyer']}", "buyer"):
            link(f"user:{o['buyer']}", f"order:{o['id']}", "下单")
    if creator_node and creator.get("user_id") is not None and f"user:{creator['user_id']}" in nodes:
        link(creator_node, f"user:{creator['user_id']}", "本人")
    for ident in idents:
        ident_id = f"{ident['kind']}:{ident['hash']}"
        if not node(ident_id, ident["label"], ident["kind"]):
            break
        for user_id in ident["buyers"]:
            link(f"user:{user_id}", ident_id, ident["kind"])
    seen_links = {(lk["source"], lk["target"]) for lk in links}
    for ident in idents:
        ident_id = f"{ident['kind']}:{ident['hash']}"
        for user_id in ident["users"]:
            user_node = f"user:{user_id}"
            if not node(user_node, f"用户 {user_id}", "buyer"):
                break
            if (user_node, ident_id) not in seen_links:
                link(user_node, ident_id, ident["kind"])
                seen_links.add((user_node, ident_id))
    return {"nodes": list(nodes.values()), "links": links, "categories": [{"name": c} for c in CATEGORIES]}


def creator_of(creator_id: int | None) -> dict[str, Any] | None:
    if creator_id is None:
        return None
    row = execute("SELECT id, code, name, user_id, rank, rank_cap FROM creator WHERE id = %s",
                  (creator_id,)).fetchone()
    if row is None:
        return None
    return {"id": row[0], "code": row[1], "name": row[2], "user_id": row[3], "rank": row[4], "rank_cap": row[5]}


# ---- what a decision acts on ------------------------------------------------------------------


def named_elsewhere(case_id: int, order_ids: list[int]) -> set[int]:
    """Those of these orders another open case names (its order hits, or the `orders` of its
    creator-scope hits' evidence)."""
    named = {int(r[0]) for r in execute(
        "SELECT DISTINCT h.subject_id FROM risk_case c JOIN risk_case_hit ch ON ch.case_id = c.id "
        "JOIN risk_hit h ON h.id = ch.hit_id WHERE c.state = %s AND c.id <> %s AND h.subject_kind = 'order' "
        f"AND h.subject_id IN ({placeholders(order_ids)})",
        [CaseState.OPEN.value, case_id, *order_ids]).fetchall()}
    wanted = set(order_ids)
    for (ev,) in execute("SELECT h.evidence FROM risk_case c JOIN risk_case_hit ch ON ch.case_id = c.id "
                         "JOIN risk_hit h ON h.id = ch.hit_id WHERE c.state = %s AND c.id <> %s "
                         "AND h.subject_kind = 'creator'", [CaseState.OPEN.value, case_id]).fetchall():
        try:
            listed = json.loads(ev or "{}").get("orders") or []
        except (ValueError, AttributeError):
            continue
        named.update(o for o in listed if isinstance(o, int) and o in wanted)
    return named


def held_by_hand(order_ids: list[int]) -> set[int]:
    """Orders whose latest hold event is an operator's hold (actor `operator:...`, the admin's
    and the CLI's), not the risk engine's."""
    last: dict[str, tuple[str, str]] = {}
    subjects = [f"order:{oid}" for oid in order_ids]
    for subject, topic, actor in execute(
            f"SELECT subject, topic, actor FROM event WHERE subject IN ({placeholders(subjects)}) "
            "AND topic IN ('order.risk_hold', 'order.risk_released') ORDER BY id", subjects).fetchall():
        last[subject] = (topic, actor)
    return {int(s.split(":")[1]) for s, (topic, actor) in last.items()
            if topic == "order.risk_hold" and actor.startswith("operator:")}


def live_commission(order_ids: list[int]) -> dict[tuple[int, int], int]:
    """(order, creator) -> commission still owed (pending or available) on these orders."""
    if not order_ids:
        return {}
    rows = execute("SELECT c.order_id, c.creator_id, SUM(c.amount_fen) FROM commission c JOIN settlement st "
                   "ON st.order_id = c.order_id WHERE st.state IN ('pending', 'available') "
                   f"AND c.order_id IN ({placeholders(order_ids)}) GROUP BY c.order_id, c.creator_id",
                   order_ids).fetchall()
    return {(int(o), int(c)): int(v) for o, c, v in rows}
