"""The admin page of orders set aside by the batch jobs (/admin/orders/set-aside/), through the
real HTTP interface: a delivery and a settlement that really failed in their batch are listed with
their reason, retried now after their cause is fixed (delivered or settled, the failure closed,
the retry audited); a retry while the cause is still there is one more recorded failure; readonly
may not retry (403, nothing changes); the dashboard's failure counts link to the page."""

from __future__ import annotations

import re

from models import settlement
from models.audit import AuditEntry
from models.db import db, utcnow
from models.delivery import Voucher
from models.failures import ItemFailure
from models.orders import Order, Status
from models.settlement import Commission
from models.vault import CardKey
from tasks import delivery as jobs
from tests.books import state_of
from tests.factories import chain, make_sku, paid, paid_order, status, vouchers

PAGE = "/admin/orders/set-aside/"


def retry_url(job: str, order_id: int) -> str:
    return f"/admin/orders/set-aside/{job}/{order_id}/retry"


def failure_of(job: str, order_id: int) -> ItemFailure:
    with db.connection_context():
        return ItemFailure.get((ItemFailure.job == job) & (ItemFailure.item_id == order_id))


def row_of(html: str, failure_id: int) -> str:
    found = re.search(rf'<tr data-failure="{failure_id}".*?</tr>', html, re.S)
    assert found, f"failure {failure_id} not listed"
    return found.group(0)


def failed_delivery(shop, run_jobs) -> tuple[Order, Voucher]:  # noqa: ANN001
    """A paid order whose delivery failed in its batch and was set aside: the key reserved for it is
    already in a live voucher of another order (a corrupt row). Returns it and the stray voucher."""
    sku = shop.card_sku(keys=2)
    done = paid(sku, "sa0")
    run_jobs()
    bad = paid(sku, "sa1", dispatch=False)
    with db.connection_context():
        key = CardKey.get(CardKey.order_id == bad.id)
        stray = Voucher.create(order=done.id, user=done.user_id, sku=sku.id, seq=9, kind="card_key",
                               card_key=key.id)
    jobs.deliver_orders([bad.id])
    assert status(bad.id) == Status.PAID
    return bad, stray


def test_a_failed_delivery_is_listed_and_retried_after_its_cause_is_fixed(admin, rt, shop, run_jobs):  # noqa: ANN001
    # given an order whose delivery failed in its batch and was set aside
    bad, stray = failed_delivery(shop, run_jobs)
    failure = failure_of("delivery", bad.id)
    owner = admin("owner")
    # when the operator opens the page
    page = owner.get(PAGE)
    # then the order is listed with its job, a link to it, its reason and its attempts
    assert page.status_code == 200
    row = row_of(page.get_data(as_text=True), failure.id)
    assert f'href="/admin/orders/{bad.id}"' in row and "IntegrityError" in row and "<td>1</td>" in row
    assert 'data-job="delivery"' in row and "立即重试" in row
    # when the cause is fixed and the operator retries it now
    with db.connection_context():
        Voucher.update(revoked_at=utcnow()).where(Voucher.id == stray.id).execute()
    answer = owner.post(retry_url("delivery", bad.id), {"reason": "stray voucher revoked"}, page=PAGE,
                        follow_redirects=True)
    # then it is delivered with its own key, the failure is closed and off the page, and it is audited
    assert answer.status_code == 200 and "重试成功" in answer.get_data(as_text=True)
    assert status(bad.id) == Status.DELIVERED and len(vouchers(bad.id)) == 1
    assert failure_of("delivery", bad.id).resolved_at is not None
    assert f'data-failure="{failure.id}"' not in owner.get(PAGE).get_data(as_text=True)
    with db.connection_context():
        entry = AuditEntry.get((AuditEntry.action == "order.redeliver") & (AuditEntry.object == f"order:{bad.id}"))
        assert entry.reason == "stray voucher revoked" and entry.operator_name == owner.op.name


def test_a_retry_while_the_cause_remains_is_one_more_failure(admin, rt, shop, run_jobs):  # noqa: ANN001
    # given a delivery set aside whose cause is still there
    bad, _stray = failed_delivery(shop, run_jobs)
    support = admin("support")
    # when a support operator (orders.redeliver) retries it now
    answer = support.post(retry_url("delivery", bad.id), {"reason": "try again"}, page=PAGE, follow_redirects=True)
    # then it says it failed again, and the row stays open with a second attempt
    assert answer.status_code == 200 and "重试仍然失败" in answer.get_data(as_text=True)
    failure = failure_of("delivery", bad.id)
    assert failure.attempts == 2 and failure.resolved_at is None and status(bad.id) == Status.PAID
    assert "<td>2</td>" in row_of(support.get(PAGE).get_data(as_text=True), failure.id)


def test_a_retry_needs_a_reason(admin, rt, shop, run_jobs):  # noqa: ANN001
    bad, _stray = failed_delivery(shop, run_jobs)
    answer = admin("owner").post(retry_url("delivery", bad.id), {"reason": ""}, page=PAGE)
    assert answer.status_code == 400 and "请填写原因" in answer.get_data(as_text=True)
    assert failure_of("delivery", bad.id).attempts == 1


def test_readonly_may_not_retry_and_nothing_changes(admin, rt, shop, run_jobs):  # noqa: ANN001
    # given a delivery set aside whose cause is fixed
    bad, stray = failed_delivery(shop, run_jobs)
    with db.connection_context():
        Voucher.update(revoked_at=utcnow()).where(Voucher.id == stray.id).execute()
    readonly = admin("readonly")
    with db.connection_context():
        audits = AuditEntry.select().count()
    # when a readonly operator opens the page, then it is listed without a retry button
    row = row_of(readonly.get(PAGE).get_data(as_text=True), failure_of("delivery", bad.id).id)
    assert "立即重试" not in row
    # when she posts the retry anyway (and a settlement retry), then 403 and nothing changed
    assert readonly.post(retry_url("delivery", bad.id), {"reason": "x y"}, page=PAGE).status_code == 403
    assert readonly.post(retry_url("settlement", bad.id), {"reason": "x y"}, page=PAGE).status_code == 403
    assert status(bad.id) == Status.PAID and failure_of("delivery", bad.id).attempts == 1
    with db.connection_context():
        assert AuditEntry.select().count() == audits


def test_a_failed_settlement_is_retried_by_finance_not_by_support(admin, rt, shop):  # noqa: ANN001
    # given two paid orders, one of which cannot be settled (a stray commission line of its seller)
    seller, other = chain(1)[0], chain(1, prefix="o")[0]
    sku = make_sku(shop)
    good, bad = paid_order(seller, sku), paid_order(seller, sku)
    with db.connection_context():
        Commission.create(order_id=bad, creator_id=seller.id, kind="sale", amount_fen=1, created_at=utcnow())
        settlement.settle(rt.payout, retry_intervals=(60,))
    assert (state_of(good), state_of(bad)) == ("pending", None)
    failure = failure_of("settlement", bad)
    finance, support = admin("finance"), admin("support")
    # when finance opens the page filtered to settlement, then the order is listed
    html = finance.get(PAGE + "?job=settlement").get_data(as_text=True)
    assert 'data-job="settlement"' in row_of(html, failure.id) and "立即重试" in row_of(html, failure.id)
    # when support (no orders.retry_settlement) posts the retry, then 403 and nothing changed
    assert support.post(retry_url("settlement", bad), {"reason": "x y"}, page=PAGE).status_code == 403
    assert failure_of("settlement", bad).attempts == 1
    # when the cause is fixed (the order attributed to another seller) and finance retries it now
    with db.connection_context():
        Order.update(seller_id=other.id, ref_code=other.code).where(Order.id == bad).execute()
    answer = finance.post(retry_url("settlement", bad), {"reason": "reattributed"}, page=PAGE,
                          follow_redirects=True)
    # then it is settled, its failure closed, and the retry audited
    assert answer.status_code == 200 and "重试成功" in answer.get_data(as_text=True)
    assert state_of(bad) == "pending" and failure_of("settlement", bad).resolved_at is not None
    with db.connection_context():
        assert AuditEntry.get(AuditEntry.action == "order.retry_settlement").reason == "reattributed"


def test_pages_are_newest_first_with_a_keyset_cursor(admin, rt):  # noqa: ANN001
    # given 52 open failures and one resolved
    with db.connection_context():
        ids = [ItemFailure.create(job="delivery", item_id=1000 + i, error=f"E{i}").id for i in range(52)]
        ItemFailure.create(job="settlement", item_id=999, error="gone", resolved_at=utcnow())
    owner = admin("owner")
    # when the operator opens the page and follows "older"
    first = owner.get(PAGE).get_data(as_text=True)
    listed = [int(x) for x in re.findall(r'<tr data-failure="(\d+)"', first)]
    assert listed == ids[::-1][:50]
    older = re.search(r'<a href="([^"]+)" id="next-page">', first)
    assert older and f"before={ids[2]}" in older.group(1)
    second = owner.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    # then the rest follow, there is no further page, and the resolved failure is never listed
    assert [int(x) for x in re.findall(r'<tr data-failure="(\d+)"', second)] == ids[1::-1]
    assert 'id="next-page"' not in second and "gone" not in first + second
    assert owner.get(PAGE + "?before=abc").status_code == 400
    assert owner.get(PAGE + "?job=nope").status_code == 400


def test_the_dashboard_failure_counts_link_to_the_page(admin, rt):  # noqa: ANN001
    html = admin("support").get("/admin/").get_data(as_text=True)
    assert re.search(r'<a href="/admin/orders/set-aside/\?job=delivery" id="failed-deliveries-link">', html)
    assert re.search(r'<a href="/admin/orders/set-aside/\?job=settlement" id="failed-settlements-link">', html)
