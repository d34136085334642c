"""Admin pages: activity (a platform export uploaded and imported, with its report).

The import is the CLI's (`qianxing activity import` = `models.activity.import_csv`, which reads
a path): the upload is checked here (size, UTF-8 or UTF-8 with BOM), written to a temporary
file and imported from it, so the rules, the report and the chunked transactions are exactly
the command's. The report lists imported rows, duplicates and bad rows with line and reason.
The upload may be larger than the API's request limit: `base.LargeUploads`. `read_upload` (the
file of a form, at most ADMIN_UPLOAD_MAX_BYTES) also reads the broadcast poster.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import PurePath
from typing import Any

from flask import flash, request
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import FileStorage

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import LargeUploads, QxView, size_text, upload_limit
from miniapp_api.admin.security import must
from models.activity import CSV_COLUMNS, EXPORT_TIMEZONE, ImportReport, import_csv
from models.errors import DomainError, InvalidInput

REPORT_ROWS = 200  # bad rows listed on the page (the report keeps up to 1,000)


def read_upload(field: str = "file") -> tuple[str, bytes]:
    """(file name, bytes) of an uploaded file, at most ADMIN_UPLOAD_MAX_BYTES. Raises
    InvalidInput when no file was chosen or it is over the limit."""
    upload = request.files.get(field)
    if not isinstance(upload, FileStorage) or not upload.filename:
        raise InvalidInput(_("请选择要上传的文件"), code="no_file")
    limit = upload_limit()
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(_("文件超过大小上限 %(limit)s", limit=size_text(limit)), code="file_too_large")
    if not data:
        raise InvalidInput(_("文件是空的"), code="empty_file")
    return PurePath(upload.filename.replace("\\", "/")).name[:80], data


def utf8_text(data: bytes) -> str:
    """The text of a CSV that must be UTF-8 (a BOM is allowed); else InvalidInput."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(_("文件不是 UTF-8 编码：请在 Excel 中“另存为 CSV UTF-8”后再上传（GBK 等编码不支持）"),
                           code="not_utf8") from None


def import_upload(data: bytes, timezone: str) -> ImportReport:
    """`import_csv` on the uploaded bytes (already checked to be UTF-8), through a temp file."""
    fd, path = tempfile.mkstemp(prefix="qx-activity-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return import_csv(path, timezone=timezone)
        except csv.Error as exc:
            raise InvalidInput(_("CSV 格式错误：%(error)s", error=str(exc)[:200]), code="invalid_csv") from None
    finally:
        os.unlink(path)


class ActivityView(LargeUploads, QxView):
    permission = "activity.view"
    upload_endpoints = ("upload",)

    def _page(self, status: int = 200, **context: Any) -> Any:
        context.setdefault("timezone", EXPORT_TIMEZONE)
        context.setdefault("report", None)
        return self.render("qx/activity.html", columns=CSV_COLUMNS, limit=size_text(upload_limit()),
                           report_rows=REPORT_ROWS, **context), status

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/upload", methods=["POST"])
    def upload(self) -> Any:
        must("activity.import")
        timezone = (request.form.get("timezone") or EXPORT_TIMEZONE).strip()[:64]
        try:
            name, data = read_upload()
            utf8_text(data)
            reason = form_reason(required=False)
            outcome = perform("activity.import", f"activity_import:{name}", reason=reason, atomic=False,
                              run=lambda: import_upload(data, timezone),
                              after=lambda r: {"file": name, "bytes": len(data), "timezone": timezone, "rows": r.rows,
                                               "imported": r.imported, "duplicates": r.duplicates,
                                               "bad_count": r.bad_count,
                                               "bad": [[b.line, b.code] for b in r.bad[:20]]})
        except DomainError as exc:
            flash(exc.message, "error")
            return self._page(400, timezone=timezone)
        if outcome.duplicate:
            flash_duplicate()
            return self._page(timezone=timezone)
        report: ImportReport = outcome.result
        flash(_("导入完成：新增 %(imported)s 行，重复 %(duplicates)s 行，错误 %(bad)s 行",
                imported=report.imported, duplicates=report.duplicates, bad=report.bad_count),
              "success" if not report.bad_count else "warning")
        return self._page(report=report, file=name, timezone=timezone)


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(ActivityView(name=_l("活动数据"), endpoint="activity", url="activity"))
