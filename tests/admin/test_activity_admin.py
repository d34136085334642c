"""The activity import page through the real HTTP interface: a platform export uploaded as a
file is imported exactly as `qianxing activity import` imports it, with its report (imported,
duplicates, bad rows by line); a GBK file, an oversized file and a file the header does not fit
are refused with a clear message and nothing stored; roles without activity.import get 403."""

from __future__ import annotations

import io

import pytest

from models.activity import ActivityEvent
from models.audit import AuditEntry
from models.db import db
from tests.factories import creator

PAGE = "/admin/activity/"
UPLOAD = "/admin/activity/upload"


def stored() -> int:
    with db.connection_context():
        return ActivityEvent.select().count()


def upload(client, data: bytes, name: str = "export.csv", page: str = PAGE, **form: str):  # noqa: ANN001, ANN201
    return client.post(UPLOAD, {"file": (io.BytesIO(data), name), **form}, page=page,
                       content_type="multipart/form-data")


def export(*lines: str, bom: bool = False) -> bytes:
    return ("\ufeff" if bom else "").encode() + ("\n".join(lines) + "\n").encode("utf-8")


def test_an_export_is_imported_with_its_report_and_a_second_upload_adds_nothing(admin) -> None:  # noqa: ANN001
    """Given two creators and an export (UTF-8 with BOM, as Excel writes it) with good rows and
    bad ones, when an ops operator uploads it, then the good rows are stored and the page
    reports imported rows and the bad ones by line and reason; uploading it again adds nothing
    and reports duplicates; both imports are audited."""
    a, b = creator(), creator()
    data = export("event_id,creator_code,type,ref,count,occurred_at",
                  f"p-1,{a.code},video_play,v100,120000,2026-05-01T10:00:00+08:00",
                  f",{b.code},live_entry,live-3,7,2026-05-01 12:00:00",
                  f"p-3,{a.code},video_play,v100,abc,2026-05-01T10:00:00",
                  "p-4,NOBODY99,video_play,v100,1,2026-05-01T10:00:00", bom=True)
    ops = admin("ops")
    answer = upload(ops, data, "抖音导出.csv")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200, page[:600]
    assert 'id="report-imported">2<' in page and 'id="report-duplicates">0<' in page
    assert 'id="report-bad">2<' in page
    assert 'data-line="4"' in page and "invalid_count" in page
    assert 'data-line="5"' in page and "unknown_creator" in page and "NOBODY99" in page
    assert stored() == 2
    # when the same file is uploaded again
    again = upload(ops, data, "抖音导出.csv").get_data(as_text=True)
    assert 'id="report-imported">0<' in again and 'id="report-duplicates">2<' in again
    assert stored() == 2
    with db.connection_context():
        entries = list(AuditEntry.select().where(AuditEntry.action == "activity.import").order_by(AuditEntry.id))
    assert [(e.object, e.after["imported"], e.after["duplicates"], e.after["bad_count"]) for e in entries] == [
        ("activity_import:抖音导出.csv", 2, 0, 2), ("activity_import:抖音导出.csv", 0, 2, 2)]


def test_a_gbk_file_is_refused_with_a_clear_message_and_nothing_stored(admin) -> None:  # noqa: ANN001
    """Given an export saved in GBK (Excel's default on Chinese Windows), when it is uploaded,
    then the page says it is not UTF-8 (400) and nothing is stored or audited."""
    c = creator(name="主播小王")
    data = ("event_id,creator_code,type,ref,count,occurred_at\n"
            f"g-1,{c.code},video_play,视频一,10,2026-05-01T10:00:00\n").encode("gbk")
    answer = upload(admin("ops"), data)
    assert answer.status_code == 400 and "UTF-8" in answer.get_data(as_text=True)
    assert stored() == 0
    with db.connection_context():
        assert AuditEntry.select().where(AuditEntry.action == "activity.import").count() == 0


def test_a_file_over_the_size_limit_is_refused_with_the_limit(admin, rt) -> None:  # noqa: ANN001
    """Given the upload limit, when a file one byte over it is uploaded, then the page names the
    limit (400), and a file far over it is refused before it is read (413, the limit named too);
    nothing is stored."""
    limit = rt.settings.ADMIN_UPLOAD_MAX_BYTES
    c = creator()
    header = b"event_id,creator_code,type,ref,count,occurred_at\n"
    row = f"x-1,{c.code},video_play,v1,1,2026-05-01T10:00:00\n".encode()
    data = header + row * ((limit - len(header)) // len(row) + 1)
    assert len(data) > limit
    answer = upload(admin("ops"), data)
    assert answer.status_code == 400 and "文件超过大小上限" in answer.get_data(as_text=True)
    huge = upload(admin("ops"), data * 2)
    assert huge.status_code == 413 and "文件超过大小上限 5.0 MB" in huge.get_data(as_text=True)
    assert stored() == 0


def test_a_file_just_under_the_api_body_limit_is_not_what_limits_an_upload(admin, rt) -> None:  # noqa: ANN001
    """The API's MAX_BODY_BYTES is small; an export larger than it (but under the upload limit)
    is imported: the upload view raises the per-request limit."""
    c = creator()
    lines = ["event_id,creator_code,type,ref,count,occurred_at"]
    lines += [f"big-{i},{c.code},video_play,v{i},1,2026-05-01T10:00:00" for i in range(800)]
    data = export(*lines)
    assert rt.settings.MAX_BODY_BYTES < len(data) < rt.settings.ADMIN_UPLOAD_MAX_BYTES
    answer = upload(admin("ops"), data)
    assert answer.status_code == 200 and 'id="report-imported">800<' in answer.get_data(as_text=True)
    assert stored() == 800


@pytest.mark.parametrize(("data", "message"), [
    (b"creator_code,type,ref,occurred_at\n", "count"),  # the service's reason: a column is missing
    (b"", "文件是空的"),
])
def test_a_file_that_is_no_export_is_refused(admin, data: bytes, message: str) -> None:  # noqa: ANN001
    answer = upload(admin("ops"), data)
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert stored() == 0


def test_an_unknown_time_zone_is_refused(admin) -> None:  # noqa: ANN001
    c = creator()
    data = export("creator_code,type,ref,count,occurred_at", f"{c.code},video_play,v1,1,2026-05-01 10:00:00")
    answer = upload(admin("ops"), data, timezone="Mars/Olympus")
    assert answer.status_code == 400 and "Mars/Olympus" in answer.get_data(as_text=True)
    assert stored() == 0


@pytest.mark.parametrize("role", ["readonly", "support", "finance"])
def test_roles_without_activity_import_are_refused(admin, role: str) -> None:  # noqa: ANN001
    """Given an operator without activity.import, when they upload an export, then 403 and
    nothing is stored."""
    c = creator()
    data = export("creator_code,type,ref,count,occurred_at", f"{c.code},video_play,v1,1,2026-05-01 10:00:00")
    who = admin(role)
    assert upload(who, data, page="/admin/").status_code == 403
    assert stored() == 0
    assert who.get(PAGE).status_code == (403 if role == "support" else 200)
