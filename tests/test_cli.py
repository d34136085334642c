"""The `qianxing` operator commands, run through click against the test database and Redis."""

from __future__ import annotations

from models import ledger
from models.db import db
from models.orders import Order, Status


def _order(client, login, sku) -> dict:  # noqa: ANN001
    auth = login("cli-buyer")
    resp = client.post("/api/v1/orders", json={"sku": sku.code, "quantity": 1}, headers=auth)
    assert resp.status_code == 201, resp.json
    assert client.post(f"/api/v1/orders/{resp.json['id']}/pay", headers=auth).status_code == 200
    return resp.json


def test_migrate_reports_an_up_to_date_schema(cli):
    result = cli("migrate")
    assert result.exit_code == 0, result.output
    assert "schema is up to date" in result.output


def test_mark_paid_records_an_offline_payment_once_and_delivery_follows(
        cli, client, login, shop, run_jobs):
    # given a pending order
    sku = shop.card_sku(keys=2, price=700)
    order = _order(client, login, sku)
    # when the operator marks it paid twice
    first = cli("orders", "mark-paid", str(order["id"]), "--reference", "BANK-1")
    second = cli("orders", "mark-paid", str(order["id"]), "--reference", "BANK-1")
    # then the first is a payment, the second a duplicate, and the worker delivers it
    assert first.exit_code == 0 and f"order {order['id']}: paid" in first.output
    assert second.exit_code == 0 and "duplicate" in second.output
    run_jobs()
    with db.connection_context():
        assert Order.get_by_id(order["id"]).status == Status.DELIVERED
        assert ledger.balance(ledger.SALES) == -700
    shown = cli("orders", "show", str(order["id"]))
    assert "order.paid" in shown.output and "order.delivered" in shown.output
    assert cli("ledger", "verify").output.strip() == "ledger balanced"


def test_refund_through_the_cli_refunds_at_wechat_pay(cli, client, login, shop, fake_pay,
                                                      run_jobs):
    # given an order paid through WeChat Pay and delivered
    sku = shop.card_sku(keys=2, price=880)
    order = _order(client, login, sku)
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # when the operator refunds it (twice)
    first = cli("orders", "refund", str(order["id"]), "--reason", "customer")
    second = cli("orders", "refund", str(order["id"]))
    # then WeChat Pay refunded it once and the order is refunded
    assert first.exit_code == 0 and "succeeded" in first.output, first.output
    assert second.exit_code == 0 and "succeeded" in second.output
    assert [r.refund_fee for r in fake_pay.refunds if r.out_trade_no == order["no"]] == [880]
    with db.connection_context():
        assert Order.get_by_id(order["id"]).status == Status.REFUNDED
        assert ledger.balance(ledger.SALES) == 0


def test_refunding_an_unpaid_order_fails_cleanly(cli, client, login, shop):
    sku = shop.card_sku(keys=1)
    order = _order(client, login, sku)
    result = cli("orders", "refund", str(order["id"]))
    assert result.exit_code == 1 and "only paid orders can be refunded" in result.output


# ---- vault import: the admin upload's checks ---------------------------------------------------


def _pool(sku) -> int:  # noqa: ANN001
    from models.vault import CardKey

    with db.connection_context():
        return CardKey.select().where(CardKey.sku == sku.id).count()


def test_vault_import_refuses_keys_that_start_like_a_formula_with_their_lines(cli, shop, tmp_path):
    """Given a key file whose lines 3, 4, 6 and 8 start with = + - @ (one after spaces) and line 7
    with a tab (what the admin's upload refuses); when it is imported with `qianxing vault
    import`; then the command fails naming those lines, prints no key, and no key is written."""
    sku = shop.card_sku(keys=0, code="CLI-FORMULA")
    path = tmp_path / "keys.csv"
    path.write_text("卡密\nOK-KEY-0001-SECRET\n=HYPERLINK(1)\n+SUM-2\nOK-KEY-0002-SECRET\n  -3-SECRET\n"
                    "\tTAB-SECRET\n@CMD-SECRET\n", encoding="utf-8")
    result = cli("vault", "import", str(path), "--sku", sku.code)
    assert result.exit_code == 1, result.output
    assert "formula" in result.output and "on lines 3, 4, 6, 7, 8; nothing imported" in result.output
    assert "SECRET" not in result.output and "HYPERLINK" not in result.output
    assert _pool(sku) == 0


def test_vault_import_refuses_a_file_that_is_not_utf8(cli, shop, tmp_path):
    """Given a key file saved as GBK (a header in Chinese); when it is imported; then the command
    fails saying the file is not UTF-8, and no key is written; the same keys as UTF-8 import."""
    sku = shop.card_sku(keys=0, code="CLI-GBK")
    path = tmp_path / "keys.csv"
    path.write_bytes("卡密\nGBK-KEY-00001\nGBK-KEY-00002\n".encode("gbk"))
    result = cli("vault", "import", str(path), "--sku", sku.code)
    assert result.exit_code == 1 and "not UTF-8" in result.output and "nothing imported" in result.output
    assert _pool(sku) == 0
    path.write_bytes("\ufeff卡密\r\nGBK-KEY-00001\r\nGBK-KEY-00002\r\n".encode())
    result = cli("vault", "import", str(path), "--sku", sku.code)
    assert result.exit_code == 0 and "imported 2 keys into CLI-GBK; rejected 0" in result.output
    assert _pool(sku) == 2
