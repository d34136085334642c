"""The vault pages over real HTTP: a CSV of card keys uploaded for a SKU is the CLI's import
(duplicates reported by line, the rest written), files that are not UTF-8, too large or carry a
formula are refused whole, keys never show in a page or an audit row, and key rotation is the
owner's, run as a job with its progress on the page."""

from __future__ import annotations

import json
import os
import re

import pytest

from models import vault
from models.audit import AuditEntry
from models.catalog import Kind
from models.db import db
from models.vault import CardKey
from qianxing.settings import parse_voucher_keys
from tests.factories import api_paid

VAULT = "/admin/vault"


def _text(html: bytes) -> str:
    return re.sub(r"\s+", " ", html.decode())


def _keys(sku) -> int:  # noqa: ANN001
    with db.connection_context():
        return CardKey.select().where(CardKey.sku == sku.id).count()


def _audit(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def _upload(who, sku, data: bytes, name: str = "keys.csv", page: str = f"{VAULT}/", **extra: str):  # noqa: ANN001, ANN201
    from io import BytesIO

    form = {"sku": str(sku.id), "file": (BytesIO(data), name), **extra}
    return who.post(f"{VAULT}/upload", form, page=page, content_type="multipart/form-data")


KEYS = [f"NEWKEY-{i:04d}-PLAINTEXT-SECRET" for i in range(1, 6)]


def test_a_good_csv_is_imported_and_its_keys_are_sold(admin, shop, client, login, fake_pay, run_jobs):
    """Given an empty card SKU; when ops uploads a CSV of five keys with a header; then five keys
    are available (the page's counts say so), the report says 5 imported, the audit row holds
    counts only; and a shopper who buys one through the API gets one of those keys."""
    sku = shop.card_sku(keys=0, code="UPLOAD-1")
    ops = admin("ops")
    body = ("卡密\n" + "\n".join(KEYS) + "\n").encode()
    answer = _upload(ops, sku, body, reason="首批卡密")
    assert answer.status_code == 200, _text(answer.data)[-800:]
    page = _text(answer.data)
    assert 'id="report-imported">5<' in page
    assert re.search(r'data-sku="UPLOAD-1">.*?data-state="available">5<', page)
    assert _keys(sku) == 5
    audit = _audit("vault.import")
    assert len(audit) == 1 and audit[0].object == f"sku:{sku.id}" and audit[0].reason == "首批卡密"
    assert audit[0].after == {"sku": "UPLOAD-1", "bytes": len(body), "rows": 5, "imported": 5,
                              "duplicate_in_file": 0, "duplicate_in_pool": 0, "invalid": 0}
    # when a shopper buys one and the worker delivers it
    auth = login("vault-buyer")
    order = api_paid(client, lambda _openid: auth, fake_pay, sku, "vault-buyer")
    run_jobs()
    # then the order is delivered with one of the uploaded keys
    assert client.get(f"/api/v1/orders/{order['id']}", headers=auth).json["status"] == "delivered"
    voucher = client.get("/api/v1/vouchers", headers=auth).json["vouchers"][0]
    assert client.get(f"/api/v1/vouchers/{voucher['id']}", headers=auth).json["secret"] in KEYS
    counts = _text(ops.get(f"{VAULT}/sku/{sku.id}").data)
    assert 'data-state="available">available: <strong>4<' in counts and 'data-state="sold">sold: <strong>1<' in counts


def test_duplicates_are_reported_by_line_and_the_rest_imported(admin, shop):
    """Given a SKU whose pool holds KEY-A; when a file (header on line 1) repeats KEY-B on lines 2
    and 3, carries KEY-A on line 4 and an overlong key on line 6; then KEY-B and KEY-C are
    imported, and the report names line 3 (in the file), line 4 (in the pool) and line 6
    (invalid), as the CLI does."""
    sku = shop.card_sku(keys=0, code="DUP")
    with db.connection_context():
        vault.import_keys(sku, [(1, "KEY-A-ALREADY-THERE")])
    ops = admin("ops")
    body = "key\nKEY-B-FRESH-ONE\nKEY-B-FRESH-ONE\nKEY-A-ALREADY-THERE\nKEY-C-FRESH-TWO\n" + "X" * 600 + "\n"
    answer = _upload(ops, sku, body.encode(), page=f"{VAULT}/sku/{sku.id}", back="sku")
    page = _text(answer.data)
    assert answer.status_code == 200, page[-800:]
    assert 'id="report-imported">2<' in page
    assert 'id="report-dup-file-lines">3<' in page and 'id="report-dup-pool-lines">4<' in page
    assert 'id="report-invalid-lines">6<' in page
    assert _keys(sku) == 3
    assert _audit("vault.import")[0].after["duplicate_in_pool"] == 1


def test_a_gbk_file_is_refused_and_nothing_is_written(admin, shop):
    """Given a key file saved in GBK (a Chinese header); when it is uploaded; then 400 with a
    message naming UTF-8, and no key and no audit row is written."""
    sku = shop.card_sku(keys=0)
    ops = admin("ops")
    answer = _upload(ops, sku, ("卡密\n" + "\n".join(KEYS)).encode("gbk"))
    assert answer.status_code == 400 and "文件不是 UTF-8 编码" in _text(answer.data)
    assert _keys(sku) == 0 and _audit("vault.import") == []


def test_a_utf8_file_with_a_bom_is_accepted(admin, shop):
    """Given a file as Excel saves "CSV UTF-8" (a BOM, CRLF lines, a 卡密 header); when uploaded;
    then every key is imported and the header is not taken for one."""
    sku = shop.card_sku(keys=0)
    ops = admin("ops")
    answer = _upload(ops, sku, "\ufeff卡密\r\n".encode() + "\r\n".join(KEYS).encode("utf-8"))
    assert answer.status_code == 200 and 'id="report-imported">5<' in _text(answer.data)
    assert _keys(sku) == 5


def test_a_file_over_the_limit_is_refused_with_a_message(admin, shop, settings):
    """Given the upload limit (ADMIN_UPLOAD_MAX_BYTES, far above the API's 16 KB body limit);
    when a file one byte over it is uploaded, then one far over it; then the first comes back
    413 on the vault page, the second 413 before its body is read, both with the limit in the
    message, and nothing is written. A file just under the limit is imported."""
    sku = shop.card_sku(keys=0)
    ops = admin("ops")
    limit = settings.ADMIN_UPLOAD_MAX_BYTES
    assert limit > settings.MAX_BODY_BYTES
    line = b"K" * 500 + b"\n"
    under = b"".join(b"%s-%08d\n" % (b"K" * 500, i) for i in range((limit - 100) // 510))
    assert len(under) <= limit
    answer = _upload(ops, sku, under)
    assert answer.status_code == 200, _text(answer.data)[-600:]
    imported = _keys(sku)
    assert imported == (limit - 100) // 510
    over = line * (limit // len(line)) + b"Z" * (limit % len(line) + 1)
    assert len(over) == limit + 1
    first = _upload(ops, sku, over)
    assert first.status_code == 413 and "文件超过大小上限 5.0 MB，没有导入任何卡密" in _text(first.data)
    second = _upload(ops, sku, over * 3)
    assert second.status_code == 413 and "文件超过大小上限 5.0 MB" in _text(second.data)
    assert _keys(sku) == imported and len(_audit("vault.import")) == 1


def test_a_file_with_more_keys_than_one_request_may_import_is_refused(admin, shop):
    """Given a file of 100,001 short keys (well under the byte limit); when uploaded; then 400 with
    the key limit and the way to import more (the CLI), and nothing is written."""
    sku = shop.card_sku(keys=0)
    ops = admin("ops")
    answer = _upload(ops, sku, b"".join(b"MANY-%08d\n" % i for i in range(vault.MAX_UPLOAD_KEYS + 1)))
    page = _text(answer.data)
    assert answer.status_code == 400 and "一个文件最多 100000 个卡密" in page and "qianxing vault import" in page
    assert _keys(sku) == 0 and _audit("vault.import") == []


@pytest.mark.parametrize("bad", ["=HYPERLINK(\"http://x\")", "+1-2", "-2+3", "@SUM(A1)", "\tTABBED-KEY", "\rCR-KEY",
                                 " =SPACED"])
def test_a_key_starting_with_a_formula_is_refused_with_its_line(admin, shop, bad):
    """Given a file whose third line (quoted, as a spreadsheet writes it) starts with a formula
    character; when uploaded; then 400 naming line 3, and not one key of the file is written."""
    sku = shop.card_sku(keys=0)
    ops = admin("ops")
    quoted = '"' + bad.replace('"', '""') + '"'
    answer = _upload(ops, sku, f"GOOD-KEY-000001\nGOOD-KEY-000002\n{quoted}\nGOOD-KEY-000003\n".encode())
    page = _text(answer.data)
    assert answer.status_code == 400 and "整个文件未导入：第 3 行" in page, page[-600:]
    assert _keys(sku) == 0 and _audit("vault.import") == []


def test_the_plaintext_never_appears_in_admin_pages_or_audit_rows(admin, shop):
    """Given keys uploaded through the admin and a serial SKU created with its code; when every
    vault and catalog page and the audit log (list and details) are read by the owner; then no
    key and no serial code appears anywhere, and the masked form does."""
    sku = shop.card_sku(keys=0, code="SECRETS")
    owner = admin("owner")
    assert _upload(owner, sku, "\n".join(KEYS).encode()).status_code == 200
    product = sku.product_id
    made = owner.post("/admin/catalog/skus/new/", {
        "product": str(product), "code": "SER-SECRET", "kind": "serial", "name": "序列号", "retail_price": "9.9",
        "supply_price": "1", "commission": "10", "stock": "3", "serial": "SERIAL-PLAINTEXT-XYZ-987", "active": "1"},
        page="/admin/catalog/skus/new/")
    assert made.status_code == 302, _text(made.data)[-600:]
    with db.connection_context():
        audit_ids = [a.id for a in AuditEntry.select()]
        rows = [json.dumps([a.before, a.after, a.reason, a.object], ensure_ascii=False) for a in AuditEntry.select()]
    pages = [f"{VAULT}/", f"{VAULT}/sku/{sku.id}", f"{VAULT}/rotation", "/admin/catalog/skus/",
             f"/admin/catalog/skus/details/?id={sku.id}", "/admin/audit/",
             *[f"/admin/audit/details/?id={i}" for i in audit_ids]]
    seen = ""
    for url in pages:
        answer = owner.get(url)
        assert answer.status_code == 200, url
        seen += answer.data.decode()
    secrets = [*KEYS, "SERIAL-PLAINTEXT-XYZ-987"]
    assert not [s for s in secrets if s in seen or any(s in r for r in rows)]
    assert "*" * 20 + "CRET" in seen  # the masked form: its last four characters only
    assert any("sku.create" in r or "SER-SECRET" in r for r in rows)


def test_readonly_may_look_but_not_upload(admin, shop):
    """Given a readonly operator; when they open the vault and post an upload; then the page shows
    counts without the upload form, and the upload is 403 with nothing written."""
    sku = shop.card_sku(keys=2)
    who = admin("readonly")
    page = who.get(f"{VAULT}/")
    assert page.status_code == 200 and b'id="vault-upload"' not in page.data
    assert _upload(who, sku, "\n".join(KEYS).encode()).status_code == 403
    assert _keys(sku) == 2
    assert who.get(f"{VAULT}/rotation").status_code == 403


@pytest.fixture
def restore_cipher(settings):  # noqa: ANN001, ANN201
    yield
    vault.configure(parse_voucher_keys(settings.VOUCHER_KEY or ""), settings.VOUCHER_HASH_KEY or "")


def test_the_owner_rotates_the_key_as_a_job_with_progress_and_ops_may_not(admin, shop, settings, run_jobs, rt,
                                                                           restore_cipher):
    """Given keys and a serial code sealed with the old key, and a new key put first in the
    configuration; when ops asks for a rotation, then 403 and no job; when the owner starts it
    with a reason; then a job is queued and the page shows it queued; after the worker runs it,
    every secret is sealed with the new key, the page shows done 100% and the counts per key id,
    and the audit row has the reason."""
    sku = shop.card_sku(keys=7)
    shop.counter_sku(Kind.SERIAL, serial="SERIAL-ROTATE-111")
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    vault.configure({"k2": os.urandom(32), **old}, settings.VOUCHER_HASH_KEY or "")
    ops = admin("ops")
    assert ops.post(f"{VAULT}/rotation", {"reason": "季度轮换"}, page=f"{VAULT}/").status_code == 403
    assert rt.queue.count == 0 and _audit("vault.rotate") == []
    owner = admin("owner")
    page = owner.get(f"{VAULT}/rotation")
    assert 'data-kid="dev1"><td class="qx-mono">dev1</td><td>8<' in _text(page.data)
    answer = owner.post(f"{VAULT}/rotation", {"reason": "季度轮换"}, page=f"{VAULT}/rotation")
    assert answer.status_code == 302
    assert rt.queue.count == 1
    queued = _text(owner.get(f"{VAULT}/rotation").data)
    assert 'data-state="queued"' in queued and 'http-equiv="refresh"' in queued
    # and a second start while it waits is refused
    again = owner.post(f"{VAULT}/rotation", {"reason": "再来"}, page=f"{VAULT}/rotation", follow_redirects=True)
    assert "已有一个密钥轮换任务在排队或运行中" in _text(again.data) and rt.queue.count == 1
    run_jobs()
    status = owner.get(f"{VAULT}/rotation.json").json
    assert (status["state"], status["done"], status["total"], status["percent"], status["target"]) == (
        "done", 8, 8, 100, "k2")
    done = _text(owner.get(f"{VAULT}/rotation").data)
    assert 'data-kid="k2"><td class="qx-mono">k2 (当前)</td><td>8<' in done and 'id="rotation-pending">0<' in done
    assert 'http-equiv="refresh"' not in done
    with db.connection_context():
        assert {k.key_id for k in CardKey.select().where(CardKey.sku == sku.id)} == {"k2"}
    audit = _audit("vault.rotate")
    assert len(audit) == 1 and audit[0].reason == "季度轮换" and audit[0].role == "owner"
    assert ops.get(f"{VAULT}/rotation.json").status_code == 403
