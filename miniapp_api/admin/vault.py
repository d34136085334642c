"""Vault pages: card keys per SKU (counts by state, the newest keys masked), the CSV import, and key
rotation for the owner.

- Keys are never decrypted here: pages read counts and the masked form (`vault.masked_keys` does
  not even load the sealed columns); audit rows hold counts, never key values.
- The upload is the CLI's import (`qianxing vault import`: `vault.parse_csv` + `vault.import_keys`,
  per-line duplicates and bad lines reported, the accepted keys written in one transaction),
  after the checks a browser file needs (`vault.read_upload`: at most ADMIN_UPLOAD_MAX_BYTES,
  UTF-8 with or without BOM, no key starting with a formula character; any of these refuses the
  whole file, nothing written).
- The upload may be larger than the API's request limit (`base.LargeUploads`: raised for the
  upload endpoint before the CSRF check reads the form); a body far above the limit is answered
  413 with the limit in the message before it is read.
- Rotation runs as an RQ job (tasks/vault.py); the page shows its progress from Redis and
  reloads itself while it runs.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import FileStorage

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import LargeUploads, QxView, size_text, upload_limit
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import inventory, vault
from models.catalog import Kind, Product, Sku
from models.errors import DomainError
from models.money import yuan
from tasks import vault as rotation

REPORT_LINES = 200  # line numbers listed per kind of rejection on the page
MESSAGES = {
    "too_large": "文件超过大小上限 %(limit)s，没有导入任何卡密",
    "not_utf8": "文件不是 UTF-8 编码（可能是 GBK/ANSI），没有导入任何卡密：请在 Excel 中“另存为 CSV UTF-8”后再上传",
    "not_csv": "文件不是有效的 CSV，没有导入任何卡密",
    "empty": "文件里没有卡密",
    "too_many_keys": "一个文件最多 %(keys)s 个卡密，没有导入任何卡密：请拆分文件，或用命令行 qianxing vault import",
    "formula_key": "这些行的卡密以 = + - @ 或制表符、回车开头（表格公式），整个文件未导入：第 %(lines)s 行",
    "no_file": "请选择要上传的 CSV 文件",
    "not_card_sku": "请选择一个卡密类 SKU",
    "rotation_running": "已有一个密钥轮换任务在排队或运行中",
    "reason_required": "请填写原因（至少 2 个字）",
    "missing_action_token": "表单缺少一次性令牌，请刷新页面后重试",
}
STATE_LABELS = {"none": "从未运行", "queued": "排队中", "running": "运行中", "done": "已完成", "failed": "失败",
                "interrupted": "已中断（可重新开始）", "unknown": "状态未知（Redis 不可用）"}


def _lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines[:REPORT_LINES])) + (" …" if len(lines) > REPORT_LINES else "")


def message_of(exc: DomainError) -> str:
    template = MESSAGES.get(exc.code)
    if template is None:
        return exc.message
    return _(template, limit=size_text(upload_limit()), lines=_lines(getattr(exc, "lines", []) or []),
             keys=getattr(exc, "limit", 0) if exc.code == "too_many_keys" else vault.MAX_UPLOAD_KEYS)


def _card_sku(value: str | None) -> Sku:
    text = (value or "").strip()
    sku = (Sku.select(Sku, Product).join(Product).where((Sku.id == int(text)) & (Sku.kind == Kind.CARD_KEY)).first()
           if text.isdigit() and len(text) < 12 else None)
    if sku is None:
        raise DomainError("not a card-key SKU", code="not_card_sku")
    return sku


def _import(sku: Sku, rows: list[tuple[int, str]]) -> vault.ImportReport:
    """What `qianxing vault import` does with the rows: import, then the low-stock check."""
    report = vault.import_keys(sku, rows)
    inventory.check_low_stock(sku.id, runtime().settings.LOW_STOCK_THRESHOLD)
    return report


class VaultView(LargeUploads, QxView):
    permission = "vault.view"
    upload_endpoints = ("upload",)

    def too_large_message(self, limit: int) -> str:
        return _(MESSAGES["too_large"], limit=size_text(limit))

    def _skus(self) -> list[Sku]:
        return list(Sku.select(Sku, Product).join(Product).where(Sku.kind == Kind.CARD_KEY)
                    .order_by(Sku.code).limit(1000))

    def _index(self, status: int = 200, **context: Any) -> Any:
        skus = self._skus()
        return self.render("qx/vault.html", skus=skus, counts=vault.counts_by_sku([s.id for s in skus]),
                           limit=size_text(upload_limit()), max_keys=vault.MAX_UPLOAD_KEYS,
                           report=context.pop("report", None),
                           lines=_lines, yuan=yuan, selected=context.pop("selected", None), **context), status

    @expose("/")
    def index(self) -> Any:
        return self._index()

    @expose("/sku/<int:sku_id>")
    def sku(self, sku_id: int) -> Any:
        try:
            sku = _card_sku(str(sku_id))
        except DomainError:
            abort(404)
        return self._sku_page(sku)

    def _sku_page(self, sku: Sku, status: int = 200, report: vault.ImportReport | None = None) -> Any:
        return self.render("qx/vault_sku.html", sku=sku, counts=vault.key_counts(sku), keys=vault.masked_keys(sku),
                           limit=size_text(upload_limit()), max_keys=vault.MAX_UPLOAD_KEYS, report=report,
                           lines=_lines), status

    @expose("/upload", methods=("POST",))
    def upload(self) -> Any:
        must("vault.import")
        back_to_sku = request.form.get("back") == "sku"
        sku: Sku | None = None
        try:
            sku = _card_sku(request.form.get("sku"))
            upload = request.files.get("file")
            if not isinstance(upload, FileStorage) or not upload.filename:
                raise DomainError("no file", code="no_file")
            limit = upload_limit()
            data = upload.stream.read(limit + 1)
            rows = vault.read_upload(data, limit)
            target = sku
            outcome = perform("vault.import", f"sku:{sku.id}", reason=form_reason(required=False),
                              run=lambda: _import(target, rows),
                              after=lambda r: {"sku": target.code, "bytes": len(data), "rows": len(rows),
                                               "imported": r.imported, "duplicate_in_file": len(r.duplicate_in_file),
                                               "duplicate_in_pool": len(r.duplicate_in_pool),
                                               "invalid": len(r.invalid)})
        except DomainError as exc:
            flash(message_of(exc), "error")
            status = 413 if exc.code == "too_large" else 400
            if back_to_sku and sku is not None:
                return self._sku_page(sku, status)
            return self._index(status, selected=sku.id if sku else None)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".sku", sku_id=sku.id))
        report: vault.ImportReport = outcome.result
        flash(_("导入完成：新增 %(imported)s 个卡密，拒绝 %(rejected)s 行", imported=report.imported,
                rejected=report.rejected), "success" if not report.rejected else "warning")
        if back_to_sku:
            return self._sku_page(sku, report=report)
        return self._index(report=report, selected=sku.id)

    @expose("/rotation")
    def rotation_page(self) -> Any:
        must("vault.rotate")
        status = rotation.rotation_status()
        return self.render("qx/vault_rotation.html", status=status, label=_(STATE_LABELS.get(status["state"], "")),
                           current_id=vault.cipher().current_id, by_key=vault.sealed_by_key_id(),
                           pending=vault.rotation_pending(),
                           polling=status["state"] in ("queued", "running"))

    @expose("/rotation.json")
    def rotation_json(self) -> Any:
        must("vault.rotate")
        return jsonify(rotation.rotation_status())

    @expose("/rotation", methods=("POST",))
    def rotate(self) -> Any:
        who = must("vault.rotate")
        try:
            outcome = perform("vault.rotate", "vault:rotation", reason=form_reason(), permission="vault.rotate",
                              run=lambda: rotation.queue_rotation(who.name),
                              after=lambda job: {"job": job, "target": vault.cipher().current_id})
        except DomainError as exc:
            flash(message_of(exc), "error")
            return redirect(url_for(".rotation_page"))
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("密钥轮换已开始，进度会自动刷新"), "success")
        return redirect(url_for(".rotation_page"))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(VaultView(name=_l("卡密库"), endpoint="vault", url="vault", category=_l("商品目录")))

