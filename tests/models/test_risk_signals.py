"""Risk signals through their service (models/risk_signals.py): keyed hashes and coarse parts of
IPs, device ids and phones; one row per edge event (one per order); the payer filled in; the
phone kept as hash and segment only; recording never failing its caller; retention."""

from __future__ import annotations

import datetime as dt

import pytest

from models import risk_signals
from models.assist import AssistHelp
from models.db import db, execute, utcnow
from models.errors import InvalidInput
from models.orders import Order
from models.risk_tables import RiskSignal, RiskUser
from tests.factories import assist_session, buyer, placed_at, signal_rows, unpaid

KEY, OTHER_KEY = "test-risk-key", "another-risk-key"


# -- hashing ------------------------------------------------------------------------------------

def test_the_same_value_under_the_same_key_hashes_the_same_and_another_key_differs():
    # given one value hashed twice under one key and once under another
    first, again = risk_signals.hmac_hex(KEY, "203.0.113.5"), risk_signals.hmac_hex(KEY, "203.0.113.5")
    other = risk_signals.hmac_hex(OTHER_KEY, "203.0.113.5")
    # then the hash is stable, 32 hex characters, and depends on the key
    assert first == again and len(first) == 32 and int(first, 16) >= 0
    assert other != first
    assert risk_signals.hmac_hex(KEY, "203.0.113.6") != first


def test_ips_of_one_24_share_the_coarse_part_and_not_the_hash():
    # given two addresses of one /24, one of another, and the first written as IPv4-mapped IPv6
    a, a_hash = risk_signals.ip_parts(KEY, "203.0.113.5"), risk_signals.hmac_hex(KEY, "203.0.113.5")
    b = risk_signals.ip_parts(KEY, "203.0.113.77")
    c = risk_signals.ip_parts(KEY, "198.51.100.5")
    mapped = risk_signals.ip_parts(KEY, " ::ffff:203.0.113.5 ")
    # then the /24 groups them, each address keeps its own hash, the mapped form is the same address
    assert a == (a_hash, "203.0.113") and b[1] == "203.0.113" and b[0] != a[0]
    assert c[1] == "198.51.100"
    assert mapped == a


def test_ipv6_keeps_its_48_and_a_zone_is_ignored():
    # given two addresses in one /48 (one with a zone) and one outside it
    one = risk_signals.ip_parts(KEY, "2001:db8:aa:1::5")
    two = risk_signals.ip_parts(KEY, "2001:db8:aa:ffff::9%eth0")
    far = risk_signals.ip_parts(KEY, "2001:db8:bb::1")
    # then the coarse part is the /48 and the hashes differ
    assert one[1] == two[1] == "2001:db8:aa::/48" and far[1] == "2001:db8:bb::/48"
    assert one[0] != two[0]
    assert risk_signals.ip_parts(KEY, "2001:db8:aa:ffff::9") == two


@pytest.mark.parametrize("bad", [None, "", "unknown", "999.1.1.1", "1.2.3", "203.0.113.5/24", "::g"])
def test_unusable_ips_give_nothing(bad):
    # given an address the app could not use, then nothing is hashed
    assert risk_signals.ip_parts(KEY, bad) == (None, None)


def test_device_ids_are_stripped_and_bounded():
    # given a device id with blanks around it, and the longest one allowed
    assert risk_signals.device_hash(KEY, "  dev-123 ") == risk_signals.hmac_hex(KEY, "dev-123")
    assert risk_signals.device_hash(KEY, "d" * 128) == risk_signals.hmac_hex(KEY, "d" * 128)
    # then absent, blank, too long or unprintable values give no hash
    for bad in (None, "", "   ", "d" * 129, "dev\x00id", "dev\nid", "\x7f"):
        assert risk_signals.device_hash(KEY, bad) is None, repr(bad)


def test_one_mobile_number_in_its_usual_spellings_hashes_the_same():
    # given one number as WeChat's pure number, with the country code and with separators
    plain = risk_signals.phone_parts(KEY, "13800138000")
    # then every spelling gives the same hash and the segment 138
    assert plain == (risk_signals.hmac_hex(KEY, "13800138000"), "138")
    for spelled in ("+8613800138000", "+86 138-0013-8000", "8613800138000", " 138 0013 8000 "):
        assert risk_signals.phone_parts(KEY, spelled) == plain, spelled
    assert risk_signals.phone_parts(KEY, "17012345678")[1] == "170"


@pytest.mark.parametrize("bad", [None, "", "12345", "23800138000", "1380013800", "138001380001",
                                 "1380013800a", "+1 2025550123", "12800138000", "１３８００１３８０００"])
def test_anything_but_a_mainland_mobile_gives_no_phone(bad):
    # given a number that is not an 11-digit mainland mobile (ASCII digits), then nothing
    assert risk_signals.phone_parts(KEY, bad) == (None, None)


# -- recording ----------------------------------------------------------------------------------

def test_an_order_has_one_row_and_other_events_one_each(conn):
    # given an order signal recorded twice (a retry), and two coupon claims of one user
    user = buyer("ann")
    at = utcnow() - dt.timedelta(minutes=3)
    risk_signals.record(KEY, "order", user_id=user.id, ip="203.0.113.5", device="dev-1", order_id=41, at=at)
    risk_signals.record(KEY, "order", user_id=user.id, ip="198.51.100.1", device="dev-2", order_id=41)
    for _ in range(2):
        risk_signals.record(KEY, "claim", user_id=user.id, ip="203.0.113.5", ref="coupon:7" + "x" * 80)
    # then the order keeps its first row (hashes, /24, placing time), and both claims are rows
    rows = signal_rows()
    assert [r.event for r in rows] == ["order", "claim", "claim"]
    order = rows[0]
    assert (order.order_id, order.user_id, order.at) == (41, user.id, at)
    assert (order.ip_hash, order.ip_net) == risk_signals.ip_parts(KEY, "203.0.113.5")
    assert order.device_hash == risk_signals.device_hash(KEY, "dev-1") and order.payer_hash is None
    assert rows[1].ref == ("coupon:7" + "x" * 80)[:64] and rows[1].order_id is None


def test_an_unknown_event_is_not_recorded(conn):
    # given an event name the table does not know, then nothing is written and nothing raised
    risk_signals.record(KEY, "teleport", user_id=1, ip="203.0.113.5")
    assert signal_rows() == []


def test_the_payer_fills_the_orders_row_or_makes_one(conn, shop):
    # given an order with its signal row, and an order without one (placed where no edge saw it)
    sku = shop.card_sku(keys=5)
    seen, unseen = unpaid(sku, "ann"), unpaid(sku, "bob")
    risk_signals.record(KEY, "order", user_id=seen.user_id, ip="203.0.113.5", order_id=seen.id,
                        at=seen.created_at)
    # when both are paid by one payer (twice for the first: WeChat repeats notifications)
    for order in (seen, seen, unseen):
        risk_signals.record_payment(KEY, order.id, "payer-openid-1")
    risk_signals.record_payment(KEY, unseen.id, "  ")
    # then the first row carries the payer, and the second order got a 'payment' row of its buyer
    payer = risk_signals.hmac_hex(KEY, "payer-openid-1")
    rows = {r.order_id: r for r in signal_rows()}
    assert len(rows) == 2
    assert (rows[seen.id].event, rows[seen.id].payer_hash) == ("order", payer)
    assert rows[seen.id].ip_hash == risk_signals.ip_parts(KEY, "203.0.113.5")[0]
    made = rows[unseen.id]
    assert (made.event, made.payer_hash, made.user_id, made.ip_hash) == ("payment", payer, unseen.user_id, None)
    assert made.at == Order.get_by_id(unseen.id).created_at


def test_a_failed_insert_undoes_nothing_of_the_callers_transaction(conn):
    # given a caller's transaction in which the signal table is gone (a real fault)
    with db.atomic() as txn:
        execute("ALTER TABLE risk_signal RENAME TO risk_signal_gone")
        inserted = execute('INSERT INTO "user" (openid, nickname, created_at) VALUES (%s, %s, %s)',
                           ("carol", "", utcnow())).rowcount
        # when the caller records a signal, then it does not raise
        risk_signals.record(KEY, "order", user_id=1, ip="203.0.113.5", order_id=9)
        risk_signals.record_payment(KEY, 9, "payer")
        # and the caller's transaction goes on: its earlier write is there, a later one works
        assert inserted == 1
        assert execute('SELECT COUNT(*) FROM "user" WHERE openid = %s', ("carol",)).fetchone()[0] == 1
        execute('UPDATE "user" SET nickname = %s WHERE openid = %s', ("C", "carol"))
        txn.rollback()  # and the table comes back
    assert signal_rows() == []


# -- the phone ----------------------------------------------------------------------------------

def test_a_phone_is_kept_as_hash_and_segment_and_replaced_on_a_new_one(conn):
    # given a shopper who authorizes one phone, then another
    user = buyer("ann")
    first = risk_signals.set_phone(KEY, user.id, "+86 138-0013-8000")
    second = risk_signals.set_phone(KEY, user.id, "17012345678")
    # then one row holds the latest number's hash and segment, and no digits of either number
    row = RiskUser.get_by_id(user.id)
    assert (first.phone_hash, first.phone_seg) == risk_signals.phone_parts(KEY, "13800138000")
    assert (row.phone_hash, row.phone_seg) == (second.phone_hash, "170") == risk_signals.phone_parts(
        KEY, "17012345678")
    assert RiskUser.select().count() == 1
    stored = " ".join(str(v) for v in row.__data__.values())
    assert "12345678" not in stored and "00138000" not in stored


def test_a_number_that_is_not_a_mainland_mobile_is_refused(conn):
    # given a landline, then InvalidInput and nothing kept
    with pytest.raises(InvalidInput) as err:
        risk_signals.set_phone(KEY, 5, "01088886666")
    assert err.value.code == "invalid_phone" and RiskUser.select().count() == 0


# -- retention ----------------------------------------------------------------------------------

def test_prune_deletes_old_signals_and_blanks_old_raw_ips(conn, shop):
    # given signals and orders on both sides of a 180-day cutoff
    now = utcnow()
    old_at, young_at = now - dt.timedelta(days=181), now - dt.timedelta(days=179)
    for i in range(5):
        risk_signals.record(KEY, "claim", user_id=1, ip=f"203.0.113.{i}", at=old_at)
    risk_signals.record(KEY, "claim", user_id=1, ip="203.0.113.9", at=young_at)
    sku = shop.card_sku(keys=10)
    old = [unpaid(sku, f"old-{i}", client_ip=f"198.51.100.{i}").id for i in range(3)]
    young = unpaid(sku, "young", client_ip="198.51.100.50").id
    placed_at(old_at, *old)
    placed_at(young_at, young)
    # and phones authorized (last) before and after the cutoff
    for user_id, phone in ((1, "13800138000"), (2, "13900139000"), (3, "13700137000")):
        risk_signals.set_phone(KEY, user_id, phone)
    RiskUser.update(updated_at=old_at).where(RiskUser.user_id.in_([1, 2])).execute()
    # when the signals are pruned (2 rows per transaction)
    touched = risk_signals.prune(180, now=now, batch=2)
    # then the old signals and phones are gone, the young ones stay, and only the old orders lost their IP
    assert touched == 5 + 2 + 3
    assert [r.at for r in signal_rows()] == [young_at]
    assert [u.user_id for u in RiskUser.select()] == [3]
    ips = {o.id: o.client_ip for o in Order.select()}
    assert [ips[i] for i in old] == ["", "", ""] and ips[young] == "198.51.100.50"
    # and a second run finds nothing left
    assert risk_signals.prune(180, now=now, batch=2) == 0


def test_prune_blanks_the_ip_of_old_assist_helps(conn, shop):
    # given a help counted 200 days ago and one today
    from models import assist
    from models.assist import AssistPolicy
    from models.assist_help import help_assist

    sku = shop.card_sku(keys=5, price=9_900, code="CARD-A")
    session_id, _pin = assist_session(sku)
    made, _ = assist.start(buyer("starter").id, session_id, "CARD-A")
    policy = AssistPolicy(window_s=1800, max_helps_per_session=3)
    for openid, ip in (("h1", "10.1.1.1"), ("h2", "10.1.1.2")):
        help_assist(buyer(openid).id, made.token, ip=ip, policy=policy)
    first = AssistHelp.select().order_by(AssistHelp.id).first()
    AssistHelp.update(created_at=utcnow() - dt.timedelta(days=200)).where(AssistHelp.id == first.id).execute()
    # when pruned, then only the old help's IP is blank
    assert risk_signals.prune(180) == 1
    assert [h.ip for h in AssistHelp.select().order_by(AssistHelp.id)] == ["", "10.1.1.2"]


def test_prune_refuses_a_nonsense_retention(conn):
    with pytest.raises(InvalidInput):
        risk_signals.prune(0)
    assert RiskSignal.select().count() == 0
