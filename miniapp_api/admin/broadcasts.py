"""Admin pages: the broadcast composer, the broadcasts with their progress (registered by chat.py).

A broadcast is text, an optional product card (a SKU: its name, price and a button to its
share page) or an uploaded poster, to an audience: all chat users of a platform, creators at or
above a star level, or one Telegram group. "Preview" counts the recipients (one indexed COUNT,
the same conditions the job streams); "Send" writes the broadcast row and its audit entry (text,
audience, count) in one transaction, then queues `tasks.broadcasts.send_broadcast`, which writes
one outbox row per recipient in chunks through the one sender. Progress is read from those
outbox rows. A Telegram broadcast may be paid (`allow_paid_broadcast`, its own bucket at
TELEGRAM_PAID_BROADCAST_PER_S): the sender supports it, the flag is passed through.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from PIL import Image, UnidentifiedImageError

from bots.sender import store_image
from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.activity import read_upload
from miniapp_api.admin.base import LargeUploads, QxView
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import broadcasts
from models.chat import GroupConfig
from models.errors import DomainError, InvalidInput
from models.levels import StarLevel
from tasks.broadcasts import queue_broadcast

POSTER_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF"})
POSTER_MAX_PIXELS = 40_000_000  # decoded size: refuses decompression bombs before decoding
POSTER_MAX_SIDE = 2048
PAGE = 20


def poster_png(data: bytes) -> bytes:
    """An uploaded poster as a PNG (re-encoded: metadata dropped, at most POSTER_MAX_SIDE
    pixels a side). Raises InvalidInput for anything that is not an image we take."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in POSTER_FORMATS:
                raise InvalidInput(_("海报必须是 PNG、JPEG、WEBP 或 GIF 图片"), code="invalid_poster")
            if image.width * image.height > POSTER_MAX_PIXELS:
                raise InvalidInput(_("海报图片尺寸过大"), code="invalid_poster")
            image.load()
            picture = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidInput(_("无法读取海报图片"), code="invalid_poster") from None
    picture.thumbnail((POSTER_MAX_SIDE, POSTER_MAX_SIDE))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def compose_form() -> dict[str, Any]:
    source = request.form if request.method == "POST" else request.args
    return {name: (source.get(name) or "").strip() for name in
            ("text", "audience", "platform", "min_rank", "group_key", "sku_code", "paid", "reason")}


def audience_of(form: dict[str, Any]) -> broadcasts.Audience:
    return broadcasts.audience(form["audience"], form["platform"], form["min_rank"] or "0", form["group_key"])


def broadcast_after(b: broadcasts.Broadcast) -> dict[str, Any]:
    return {"id": b.id, "text": b.text, "audience": b.audience_of().describe(), "recipients": b.recipients,
            "paid": b.paid, "sku": b.sku_code, "poster": b.image_key}


class BroadcastsView(LargeUploads, QxView):
    permission = "chat.view"
    upload_endpoints = ("send",)

    def _compose(self, form: dict[str, Any], status: int = 200, preview: int | None = None) -> Any:
        groups = list(GroupConfig.select(GroupConfig.chat_key, GroupConfig.title)
                      .where(GroupConfig.chat_key.startswith("telegram:")).order_by(GroupConfig.chat_key).limit(500))
        levels = list(StarLevel.select(StarLevel.rank, StarLevel.name).order_by(StarLevel.rank))
        return self.render("qx/broadcast_new.html", form=form, groups=groups, levels=levels, preview=preview,
                           paid_rate=runtime().settings.TELEGRAM_PAID_BROADCAST_PER_S,
                           text_max=broadcasts.TEXT_MAX), status

    @expose("/")
    def index(self) -> Any:
        before = request.args.get("before", type=int)
        rows = broadcasts.recent(PAGE, before)
        return self.render("qx/broadcasts.html", rows=[(b, broadcasts.progress(b)) for b in rows], page=PAGE)

    @expose("/new")
    def new(self) -> Any:
        """The composer; with ?preview=1 it also counts the audience's recipients."""
        form = compose_form()
        if not request.args.get("preview"):
            return self._compose(form)
        try:
            count = broadcasts.count(audience_of(form))
        except DomainError as exc:
            flash(exc.message, "error")
            return self._compose(form, 400)
        return self._compose(form, preview=count)

    @expose("/send", methods=["POST"])
    def send(self) -> Any:
        who = must("chat.broadcast")
        form = compose_form()
        settings = runtime().settings
        try:
            aud = audience_of(form)
            image_key = None
            upload = request.files.get("poster")
            if upload is not None and upload.filename:
                _name, data = read_upload("poster")
                png = poster_png(data)
                image_key = hashlib.sha256(png).hexdigest()[:40]
                store_image(runtime().sender.poster_dir, image_key, png)  # where the sender reads it
            outcome = perform(
                "chat.broadcast", "broadcast", reason=form_reason(required=False),
                run=lambda: broadcasts.create(aud, form["text"], sku_code=form["sku_code"], image_key=image_key,
                                              paid=form["paid"] == "1", share_base=settings.PUBLIC_BASE_URL,
                                              operator=(who.id, who.name)),
                after=broadcast_after)
        except DomainError as exc:
            flash(exc.message, "error")
            return self._compose(form, 400)
        if outcome.duplicate:
            flash_duplicate()
            return redirect(url_for(".index"))
        b = outcome.result
        if queue_broadcast(b.id):
            flash(_("群发 %(id)s 已排队，共 %(n)s 位收件人", id=b.id, n=b.recipients), "success")
        else:
            flash(_("群发已保存，但任务队列暂时不可用：请稍后在本页点击“重新排队”"), "warning")
        return redirect(url_for(".detail", broadcast_id=b.id))

    @expose("/<int:broadcast_id>")
    def detail(self, broadcast_id: int) -> Any:
        b = broadcasts.Broadcast.get_or_none(broadcasts.Broadcast.id == broadcast_id)
        if b is None:
            return self.render("qx/error.html", status=404, message=_("没有群发 %(id)s", id=broadcast_id)), 404
        return self.render("qx/broadcast_detail.html", b=b, progress=broadcasts.progress(b))

    @expose("/<int:broadcast_id>/requeue", methods=["POST"])
    def requeue(self, broadcast_id: int) -> Any:
        """Queue the broadcast's job again (Redis was down when it was sent, or the job failed):
        the job is idempotent, recipients already written are not written twice."""
        must("chat.broadcast")
        try:
            b = broadcasts.get(broadcast_id)
            if b.state == "written":
                raise InvalidInput(_("这条群发的收件人已全部写入，无需重新排队"), code="already_written")
            outcome = perform("chat.broadcast_requeue", f"broadcast:{b.id}", reason=form_reason(required=False),
                              before={"state": b.state, "written": b.written}, run=lambda: queue_broadcast(b.id),
                              atomic=False, after=lambda ok: {"queued": ok})
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".detail", broadcast_id=broadcast_id))
        if outcome.duplicate:
            flash_duplicate()
        elif outcome.result:
            flash(_("已重新排队"), "success")
        else:
            flash(_("任务队列暂时不可用，请稍后再试"), "error")
        return redirect(url_for(".detail", broadcast_id=broadcast_id))


def register(admin: Admin, category: Any) -> None:
    admin.add_view(BroadcastsView(name=_l("群发"), endpoint="broadcasts", url="chat/broadcasts", category=category))

