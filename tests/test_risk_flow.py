"""The risk engine end to end (issue 15), following the money through the real interfaces only:
the mini-program API (login, join, order through a creator's link from a client IP with a
device id, pay through the fake WeChat Pay's signed notification over HTTP, balances,
withdrawals), the worker's jobs as the worker calls them, and the admin of a finance operator
signed in with TOTP, deciding through the case page's form with its one-time action token."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from models import ledger, settlement
from models.audit import AuditEntry
from models.db import db, utcnow
from models.network import Creator
from models.orders import Order
from models.risk_signals import hmac_hex
from models.risk_tables import RiskCase, RiskCaseHit, RiskHit, RiskOrderScore
from models.settlement import Commission, Settlement
from models.users import User
from qianxing import wiring
from tasks import risk as risk_jobs
from tasks import settlement as jobs
from tasks import withdrawals as withdraw_jobs
from tests.admin.conftest import AdminClient
from tests.factories import edge, operator
from tests.miniapp_api.asserts import assert_error

API = "/api/v1"
C = f"{API}/creator"
CASES = "/admin/risk/cases"
IP, DEVICE = "36.110.1.23", "ios-8F2C-flow"


@pytest.fixture
def window0(settings, rt):  # noqa: ANN001, ANN201
    """The runtime with a refund window of 0 days: commission is due for release as soon as it
    is settled (the rt fixture bootstraps the normal settings again for the next test)."""
    return wiring.bootstrap(settings.model_copy(update={"REFUND_WINDOW_DAYS": 0}))


def finance(app) -> AdminClient:  # noqa: ANN001
    with db.connection_context():
        op, password = operator("finance", "fin-flow")
    return AdminClient(app.test_client(), op, password).login()


def join(client, auth: dict, **body) -> dict:  # noqa: ANN001, ANN003
    resp = client.post(f"{C}/join", json=body, headers=auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def upline_and_seller(client, login) -> tuple[dict, dict, int, int]:  # noqa: ANN001
    """Ann (one star) and Ben, who joined through Ann's code: (ann auth, ben auth, ids)."""
    ann_auth, ben_auth = login("flow-ann"), login("flow-ben")
    ann = join(client, ann_auth, name="Ann")
    with db.connection_context():
        Creator.update(rank=1).where(Creator.code == ann["code"]).execute()
    ben = join(client, ben_auth, name="Ben", invite_code=ann["code"])
    with db.connection_context():
        ids = [Creator.get(Creator.code == c).id for c in (ann["code"], ben["code"])]
    return ann_auth, {**ben_auth, "code": ben["code"]}, ids[0], ids[1]


def buy(client, fake_pay, auth: dict, sku: str, ref: str, ip: str = IP, device: str = DEVICE) -> dict:  # noqa: ANN001
    """Order through `ref` from `ip` with the device id header, then pay through WeChat Pay."""
    placed = client.post(f"{API}/orders", json={"sku": sku, "ref": ref}, **edge(auth, ip, device))
    assert placed.status_code == 201, placed.json
    order = placed.json
    pay = client.post(f"{API}/orders/{order['id']}/pay", **edge(auth, ip, device))
    assert pay.status_code == 200, pay.json
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    return order


def balances(client, auth: dict) -> tuple[int, int, int]:  # noqa: ANN001
    b = client.get(f"{C}/balances", headers={"Authorization": auth["Authorization"]}).json
    return b["pending_fen"], b["available_fen"], b["debt_fen"]


def commission_of(order_id: int, creator_id: int) -> int:
    """The creator's net commission on the order (all its lines: earned, voided, reversed)."""
    with db.connection_context():
        return sum(c.amount_fen for c in Commission.select().where(
            (Commission.order_id == order_id) & (Commission.creator_id == creator_id)))


def open_case(creator_id: int) -> RiskCase | None:
    with db.connection_context():
        return RiskCase.get_or_none((RiskCase.creator_id == creator_id) & (RiskCase.state == "open"))


def codes_on(order_id: int) -> set[str]:
    with db.connection_context():
        return {h.code for h in RiskHit.select().where((RiskHit.subject_kind == "order")
                                                       & (RiskHit.subject_id == order_id))}


def held(order_id: int) -> bool:
    with db.connection_context():
        return Order.get_by_id(order_id).risk_hold


def books_clean() -> None:
    """What `qianxing ledger verify` checks."""
    with db.connection_context():
        assert ledger.unbalanced_transactions() == []
        assert settlement.verify() == []


def test_a_new_account_big_order_is_held_for_review_cleared_by_finance_then_released(
        window0, app, client, login, shop, fake_pay, settings, caplog):  # noqa: ANN001
    caplog.set_level(logging.INFO)  # what a production log keeps (peewee SQL is DEBUG)
    # given Ben, a creator under Ann, and a ¥2000 card key; refunds allowed for 0 days
    ann_auth, ben, ann_id, ben_id = upline_and_seller(client, login)
    big = shop.card_sku(keys=3, price=200_000, code="CARD-FLOW")
    # when a shopper whose account is minutes old buys it through Ben's link from a public IP
    # with a device id, and pays through WeChat Pay
    order = buy(client, fake_pay, login("flow-newbie"), big.code, ben["code"])
    # then the order's signal row carries keyed hashes of the IP, device and payer, never the raw values
    key = settings.RISK_HMAC_KEY
    with db.connection_context():
        row = db.execute_sql("SELECT * FROM risk_signal WHERE order_id = " + str(int(order["id"])))
        names = [d[0] for d in row.description]
        signal = dict(zip(names, row.fetchone(), strict=True))
        buyer_id = User.get(User.openid == "flow-newbie").id
    assert signal["event"] == "order" and signal["user_id"] == buyer_id
    assert signal["ip_hash"] == hmac_hex(key, IP) and signal["ip_net"] == "36.110.1"
    assert signal["device_hash"] == hmac_hex(key, DEVICE)
    assert signal["payer_hash"] == hmac_hex(key, "flow-newbie")
    assert not {IP, DEVICE, "flow-newbie"} & {str(v) for v in signal.values()}

    # when the worker settles (which also scores)
    jobs.settle_all()
    # then the order is held with a new_account_big hit, and Ben has an open review case holding
    # the order's commission; Ben's and Ann's commission wait as pending
    assert held(order["id"]) and "new_account_big" in codes_on(order["id"])
    case = open_case(ben_id)
    assert case is not None and case.outcome == "review"
    with db.connection_context():
        payout = Settlement.get(Settlement.order_id == order["id"]).payout_fen
        assert RiskOrderScore.get(RiskOrderScore.order_id == order["id"]).outcome == "review"
        assert RiskCaseHit.select().where(RiskCaseHit.case_id == case.id).count() >= 1
    ben_fen, ann_fen = commission_of(order["id"], ben_id), commission_of(order["id"], ann_id)
    assert ben_fen > 0 and ann_fen > 0 and case.held_fen == payout == ben_fen + ann_fen
    assert balances(client, ben) == (ben_fen, 0, 0)

    # when the hourly release runs past the refund window
    assert jobs.release_due() == 0
    # then nothing moves: the commission stays pending while the case is open
    assert balances(client, ben) == (ben_fen, 0, 0) and balances(client, ann_auth) == (ann_fen, 0, 0)

    # when a finance operator opens the case in the admin and clears it with a note
    fin = finance(app)
    url = f"{CASES}/{case.id}"
    page = fin.get(url).data.decode()
    assert f'href="/admin/orders/{order["id"]}"' in page and "new_account_big" in page
    assert IP not in page and DEVICE not in page
    answer = fin.post(f"{url}/clear", {"note": "老客户新号，已电话核实"}, page=url)
    assert answer.status_code == 302, answer.data[:500]
    # then the case is cleared, the hold lifted, and one audit row names the operator
    with db.connection_context():
        assert RiskCase.get_by_id(case.id).state == "cleared"
        [entry] = AuditEntry.select().where(AuditEntry.action == "risk.case_clear")
    assert (entry.operator_name, entry.before["state"], entry.after["state"]) == ("fin-flow", "open", "cleared")
    assert not held(order["id"])

    # when the release job runs again
    assert jobs.release_due() == 1
    # then Ben's and Ann's commission is available, and the books verify
    assert balances(client, ben) == (0, ben_fen, 0) and balances(client, ann_auth) == (0, ann_fen, 0)
    books_clean()
    # and nothing logged along the way carries the raw IP or device id
    assert IP not in caplog.text and DEVICE not in caplog.text


def switch(app, monkeypatch, settings, **changes) -> None:  # noqa: ANN001, ANN003
    """Run the API and the jobs under these settings from now on (the app keeps its runtime in
    `app.extensions`, the jobs in the installed runtime; both are restored after the test)."""
    monkeypatch.setitem(app.extensions, "qianxing", wiring.bootstrap(settings.model_copy(update=changes)))


def test_a_case_confirmed_after_the_money_was_released_and_withdrawn_leaves_a_debt_netted_later(
        app, client, login, shop, fake_pay, settings, monkeypatch):  # noqa: ANN001
    # given the engine switched off (as before its rollout), refunds allowed for 0 days, withdrawals
    # paid out at once, and Ben under Ann
    switch(app, monkeypatch, settings, RISK_ENABLED=False, REFUND_WINDOW_DAYS=0, WITHDRAW_PAYOUT_DELAY_H=0)
    ann_auth, ben, ann_id, ben_id = upline_and_seller(client, login)
    big = shop.card_sku(keys=3, price=200_000, code="CARD-FLOW2")
    # and a minutes-old account buys a ¥2000 key through Ben's link, settled and released
    order = buy(client, fake_pay, login("flow-newbie2"), big.code, ben["code"])
    jobs.settle_all()
    assert jobs.release_due() == 1
    ben_fen, ann_fen = commission_of(order["id"], ben_id), commission_of(order["id"], ann_id)
    assert balances(client, ben) == (0, ben_fen, 0) and ben_fen == 20_000
    assert balances(client, ann_auth) == (0, ann_fen, 0) and ann_fen > 0
    # and Ben withdraws most of it to his wallet through the creator API
    w = client.post(f"{C}/withdrawals", json={"amount_fen": 15_000, "method": "wallet"},
                    headers={"Authorization": ben["Authorization"], "Idempotency-Key": "flow-wd-1"})
    assert w.status_code == 201, w.json
    assert withdraw_jobs.pay_due_withdrawals()["paid"] == 1
    assert balances(client, ben) == (0, 5_000, 0)

    # when the engine is switched on and its first scoring run reaches the released order
    switch(app, monkeypatch, settings, REFUND_WINDOW_DAYS=0)
    assert risk_jobs.score_orders()["reviewed"] == 1
    # then Ben has an open review case naming it
    case = open_case(ben_id)
    assert case is not None and case.outcome == "review" and "new_account_big" in codes_on(order["id"])

    # when finance confirms the case in the admin
    fin = finance(app)
    url = f"{CASES}/{case.id}"
    answer = fin.post(f"{url}/confirm", {"note": "新号大额，确认刷单"}, page=url)
    assert answer.status_code == 302, answer.data[:500]
    # then the commission is clawed back from available: Ben owes what he already withdrew, Ann
    # loses her share too, the paid withdrawal stands, one audit row
    with db.connection_context():
        assert RiskCase.get_by_id(case.id).state == "confirmed"
        assert AuditEntry.select().where(AuditEntry.action == "risk.case_confirm").count() == 1
    assert balances(client, ben) == (0, 0, 15_000)
    assert balances(client, ann_auth) == (0, 0, 0)
    with db.connection_context():
        assert Settlement.get(Settlement.order_id == order["id"]).state == "clawed_back"
    w_now = client.get(f"{C}/withdrawals", headers={"Authorization": ben["Authorization"]}).json["withdrawals"]
    assert [x["id"] for x in w_now] == [w.json["id"]] and w_now[0]["state"] == "paid"
    # and a new withdrawal is refused while he is in debt
    assert_error(client.post(f"{C}/withdrawals", json={"amount_fen": 10_000, "method": "credit"},
                             headers={"Authorization": ben["Authorization"]}), 409, "in_debt")
    books_clean()

    # when an established shopper (a customer for 90 days) later buys the same key through Ben's
    # link from their own address and device, and the worker settles and releases
    honest = login("flow-regular")
    with db.connection_context():
        User.update(created_at=utcnow() - dt.timedelta(days=90)).where(User.openid == "flow-regular").execute()
    later = buy(client, fake_pay, honest, big.code, ben["code"], ip="112.64.9.7", device="android-77AA")
    jobs.settle_all()
    assert codes_on(later["id"]) == set() and not held(later["id"])
    assert jobs.release_due() == 1
    # then the sale's commission first pays off the debt: 20,000 - 15,000 leaves 5,000 available
    assert balances(client, ben) == (0, 5_000, 0)
    books_clean()
