"""The order-scope risk rules (issue 15): one function per rule, a few set-based queries per
batch of orders each (never one per order).

Each rule function takes the batch (an id range and the orders to score in it) and the rule's
params, and returns {order id: evidence} for the orders it fires on; models/risk_scoring.py
turns those into hits, scores and outcomes. Nothing here writes. The shared reads and the
exact sliding windows are in models/risk_windows.py.

Evidence stays small: the shared identity's kind and its hash's first 8 characters, counts,
and at most 20 linked order ids.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from models.db import execute, placeholders
from models.network import SOLD
from models.risk_windows import (
    SLACK_S,
    Batch,
    Found,
    add,
    created,
    dense,
    epoch,
    linked,
    neighbours,
    probe,
    shift,
    signals,
    stamp,
    windows,
)

__all__ = ["ORDER_RULES", "Batch", "Found"]


# -- the rules ----------------------------------------------------------------------------------

def burst_orders(batch: Batch, params: dict[str, Any]) -> Found:
    """>= min_orders orders with one IP or device within `minutes`."""
    window = int(params["minutes"]) * 60
    need = int(params["min_orders"])
    found: Found = {}
    for kind in ("ip", "device"):
        windows(batch, found, kind, neighbours(batch, kind, window, need), window, need, distinct=False)
    return found


def burst_new_accounts(batch: Batch, params: dict[str, Any]) -> Found:
    """>= min_accounts distinct buyers, each younger than `new_hours` when ordering, from one IP
    or device within `minutes`: the new accounts' orders are hit."""
    window = int(params["minutes"]) * 60
    young = int(params["new_hours"]) * 3600
    found: Found = {}
    need = int(params["min_accounts"])
    for kind in ("ip", "device"):
        rows = neighbours(batch, kind, window, need)
        sizes = Counter(r[0] for r in rows)
        born = created(r[2] for r in rows if sizes[r[0]] >= need)
        windows(batch, found, kind, rows, window, need, distinct=True,
                 keep=lambda r, born=born: r[2] in born and float(r[3]) - born[r[2]] < young)
    return found


def shared_payer(batch: Batch, params: dict[str, Any]) -> Found:
    """>= min_accounts distinct buyers paying with one payer identity within `hours`."""
    window = int(params["hours"]) * 3600
    found: Found = {}
    need = int(params["min_accounts"])
    windows(batch, found, "payer", neighbours(batch, "payer", window, need), window, need, distinct=True)
    return found


def new_account_big(batch: Batch, params: dict[str, Any]) -> Found:
    """An order of >= min_amount_fen paid less than `hours` after the buyer's account was made."""
    hours = int(params["hours"])
    rows = execute(
        'SELECT o.id, o.amount_fen FROM "order" o JOIN "user" u ON u.id = o.user_id '
        f"WHERE o.id > %s AND o.id <= %s AND o.amount_fen >= %s AND u.created_at > {shift('o.paid_at', -hours * 3600)}",
        (batch.lo, batch.hi, int(params["min_amount_fen"]))).fetchall()
    return {oid: {"amount_fen": int(amount), "account_hours_below": hours}
            for oid, amount in rows if oid in batch.orders}


def virtual_segment(batch: Batch, params: dict[str, Any]) -> Found:
    """The buyer's authorized phone is in a virtual-operator number segment."""
    segments = list(params["segments"])
    rows = execute(
        'SELECT o.id, ru.phone_seg FROM "order" o JOIN risk_user ru ON ru.user_id = o.user_id '
        f"WHERE o.id > %s AND o.id <= %s AND ru.phone_seg IN ({placeholders(segments)})",
        (batch.lo, batch.hi, *segments)).fetchall()
    return {oid: {"segment": seg} for oid, seg in rows if oid in batch.orders}


def self_purchase(batch: Batch, params: dict[str, Any]) -> Found:
    """The buyer is the seller or one of the seller's `levels` uplines: the same user, the same
    unionid, the same authorized phone, or the order's device seen on the beneficiary's user.
    Evidence: {"beneficiaries": [{"creator_id", "how": [...]}, ...]} (the ones to void).
    Reads, each one query for the batch: the sellers and their uplines not yet known to this
    scoring call (`creators`), the buyers' unionids and phones (and the payees' where a buyer
    has one), and the devices of the payees not yet known to this scoring call (`devices`)."""
    levels = int(params["levels"])
    sold = {oid: seller for oid, (_, seller) in batch.orders.items() if seller is not None}
    if not sold:
        return {}
    people = creators(batch, set(sold.values()))
    people = creators(batch, {up for c in set(sold.values()) if c in people for up in people[c][1:]
                              if up is not None})
    tree = []
    for oid, c in sorted(sold.items()):
        if c not in people:
            continue  # a seller id without a creator row earns nothing anyway
        _, p, g = people[c]
        tree.append((oid, batch.orders[oid][0], c, people[c][0], p, people[p][0] if p in people else None,
                     g, people[g][0] if g in people else None))
    device = {r[0]: r[4] for r in signals(batch) if r[4] is not None}
    payees = {r[3] for r in tree}
    if levels >= 1:
        payees |= {r[5] for r in tree}
    if levels >= 2:
        payees |= {r[7] for r in tree}
    payees.discard(None)
    buyers = sorted({r[1] for r in tree})
    # identities of the buyers first; the payees' are read only where a buyer has one to match
    union: dict[int, str] = {}
    phone: dict[int, str] = {}
    for user_id, unionid, phone_hash in execute(*probe(
            ["u.id", "u.unionid", "r.phone_hash"], '"user" u LEFT JOIN risk_user r ON r.user_id = u.id',
            "u.id = k.v AND (u.unionid IS NOT NULL OR r.phone_hash IS NOT NULL)", buyers, "bigint")).fetchall():
        if unionid is not None:
            union[user_id] = unionid
        if phone_hash is not None:
            phone[user_id] = phone_hash
    if union:
        union.update(execute(*probe(["u.id", "u.unionid"], '"user" u', "u.id = k.v AND u.unionid IS NOT NULL",
                                    sorted(payees - set(union)), "bigint")).fetchall())
    if phone:  # everyone holding a buyer's phone (the phone_hash index), payees among them
        phone.update((u, h) for u, h in execute(*probe(["r.user_id", "r.phone_hash"], "risk_user r",
                                                       "r.phone_hash = k.v", sorted(set(phone.values()))))
                     .fetchall() if u in payees)
    seen = devices(batch, payees) if device else {}  # payee -> the devices they used
    none: set[str] = set()
    found: Found = {}
    for oid, buyer, c, cu, p, pu, g, gu in tree:
        ub, pb, d = union.get(buyer), phone.get(buyer), device.get(oid)
        on_device = set() if d is None else {u for u in (cu, pu, gu) if d in seen.get(u, none)}
        if ub is None and pb is None and not on_device and buyer not in (cu, pu, gu):
            continue  # nothing to match: nearly every order
        for creator_id, user_id in ((c, cu), (p, pu), (g, gu))[:levels + 1]:
            if creator_id is None:
                continue
            flags = (user_id == buyer, ub is not None and ub == union.get(user_id),
                     pb is not None and pb == phone.get(user_id), user_id in on_device)
            if any(flags):
                how = [name for name, flag in zip(("user", "unionid", "phone", "device"), flags, strict=True) if flag]
                found.setdefault(oid, {"beneficiaries": []})["beneficiaries"].append(
                    {"creator_id": creator_id, "how": how})
    return found


def devices(batch: Batch, users: set[int]) -> dict[int, set[str]]:
    """user -> the device hashes of their signals, read once per scoring call (`batch.run`)
    for the payees (creators' users, a bounded set; few of them buy): one probe of the users
    not read yet on the (user_id, at) index, instead of every batch device's rows."""
    known: dict[int, set[str]] = batch.run.setdefault("devices", {})
    missing = sorted(users - known.keys())
    if missing:
        for user_id in missing:
            known[user_id] = set()
        for user_id, d in execute(*probe(["s.user_id", "s.device_hash"], "risk_signal s",
                                         "s.user_id = k.v AND s.device_hash IS NOT NULL", missing,
                                         "bigint")).fetchall():
            known[user_id].add(d)
    return known


def creators(batch: Batch, ids: set[int]) -> dict[int, tuple[int, int | None, int | None]]:
    """creator -> (user id, parent, grandparent), read once per scoring call (`batch.run`):
    one probe of the creator ids not read yet."""
    known: dict[int, tuple[int, int | None, int | None]] = batch.run.setdefault("creators", {})
    missing = sorted(ids - known.keys())
    if missing:
        for cid, user_id, parent, grand in execute(*probe(
                ["c.id", "c.user_id", "c.parent_id", "c.grandparent_id"], "creator c", "c.id = k.v",
                missing, "bigint")).fetchall():
            known[cid] = (user_id, parent, grand)
    return known


def circular_buying(batch: Batch, params: dict[str, Any]) -> Found:
    """Within creator X's first two levels (buyers who are X or creators with parent or
    grandparent X): >= min_orders paid orders within `days` from >= 2 distinct buyers sharing a
    device, phone or IP. Evidence names X (`team_of`)."""
    window = int(params["days"]) * 86_400
    need = int(params["min_orders"])
    sig = {r[0]: r for r in signals(batch)}
    rows = [r for r in execute(
        f'SELECT o.id, o.user_id, cb.id, cb.parent_id, cb.grandparent_id, {epoch("o.paid_at")} FROM "order" o '
        "JOIN creator cb ON cb.user_id = o.user_id WHERE o.id > %s AND o.id <= %s",
        (batch.lo, batch.hi)).fetchall() if r[0] in batch.orders and r[5] is not None]
    if not rows:
        return {}
    phones = dict(execute(*probe(["r.user_id", "r.phone_hash"], "risk_user r",
                                 "r.user_id = k.v AND r.phone_hash IS NOT NULL",
                                 sorted({r[1] for r in rows}), "bigint")).fetchall())
    cands = [(oid, c0, c1, c2, sig.get(oid, (None,) * 6)[3], sig.get(oid, (None,) * 6)[4], phones.get(buyer), at)
             for oid, buyer, c0, c1, c2, at in rows]
    teams = {x for c in cands for x in c[1:4] if x is not None}
    lo = stamp(min(float(c[7]) for c in cands) - 2 * window - SLACK_S)
    hi = stamp(max(float(c[7]) for c in cands) + 2 * window + SLACK_S)
    sold = placeholders(SOLD)
    found_cols = ["o2.id", "o2.user_id", epoch("o2.paid_at"), "cx.id", "cx.parent_id", "cx.grandparent_id"]
    neighbours: list[tuple] = []
    for kind, col, at in (("ip", "ip_hash", 4), ("device", "device_hash", 5), ("phone", "phone_hash", 6)):
        values = sorted({c[at] for c in cands if c[at] is not None})
        if not values:
            continue
        if kind == "phone":
            sql, args = probe(["r2.phone_hash", *found_cols],
                              'risk_user r2 JOIN "order" o2 ON o2.user_id = r2.user_id '
                              "JOIN creator cx ON cx.user_id = r2.user_id",
                              f"r2.phone_hash = k.v AND o2.status IN ({sold}) AND o2.paid_at >= %s "
                              "AND o2.paid_at <= %s", values)
        else:
            sql, args = probe([f"x.{col}", *found_cols],
                              'risk_signal x JOIN "order" o2 ON o2.id = x.order_id '
                              "JOIN creator cx ON cx.user_id = o2.user_id",
                              f"x.{col} = k.v AND x.at >= %s AND x.at <= %s AND o2.status IN ({sold})", values)
        params = (*args, *SOLD, lo, hi) if kind == "phone" else (*args, lo, hi, *SOLD)
        neighbours += [(kind, *row) for row in execute(sql, params).fetchall()]
    groups: dict[tuple[int, str, str], dict[int, tuple[float, int, int]]] = defaultdict(dict)
    for kind, key, oid, uid, at, *tree in neighbours:
        if at is None:
            continue
        for x in tree:
            if x is not None and x in teams:
                groups[(x, kind, key)][oid] = (float(at), oid, uid)
    members: dict[tuple[int, str, str], tuple[list, set[int]]] = {}
    found: Found = {}
    for oid, c0, c1, c2, ip, device, phone, at in cands:
        if at is None:
            continue
        for kind, key in (("ip", ip), ("device", device), ("phone", phone)):
            if key is None:
                continue
            for x in (c0, c1, c2):
                if x is None or (x, kind, key) not in groups:
                    continue
                if (x, kind, key) not in members:
                    rows = sorted(groups[(x, kind, key)].values())
                    members[(x, kind, key)] = (rows, dense(rows, window, need, min_users=2))
                rows, caught = members[(x, kind, key)]
                if oid in caught:
                    near = linked(rows, caught, float(at), window)
                    add(found, oid, kind, key, len(near), near)
                    found[oid].setdefault("team_of", x)
    return found


ORDER_RULES: dict[str, Callable[[Batch, dict[str, Any]], Found]] = {
    "self_purchase": self_purchase, "circular_buying": circular_buying, "burst_orders": burst_orders,
    "burst_new_accounts": burst_new_accounts, "shared_payer": shared_payer,
    "new_account_big": new_account_big, "virtual_segment": virtual_segment,
}
