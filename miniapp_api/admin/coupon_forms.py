"""Reading the coupon and group-buy admin forms into the services' arguments: amounts typed in
yuan and percentages (through models/catalog_edits, exact), wall times in LIVE_TIMEZONE, scope
targets as product ids and SKU codes, the list of shoppers to issue to (pasted or a CSV upload),
and the operator-language sentence of every refusal. Nothing here decides a rule
(models/coupon_issue.create_coupon and models/group_rules.check_spec do)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from flask_babel import gettext as _

from miniapp_api.admin.catalog_forms import message_of as catalog_message
from miniapp_api.admin.live_forms import local_start
from models.catalog import Sku
from models.catalog_edits import CatalogInputError, percent_to_bp, yuan_to_fen
from models.coupons import CAMPAIGNS, CouponKind, CouponSpec, Scope
from models.errors import DomainError, InvalidInput
from models.group_rules import ActivitySpec
from models.network import Creator

UPLOAD_MAX = 2 * 1024 * 1024  # a recipients CSV
TARGETS_MAX = 500

# The services' refusals in the operator's language, by error code.
MESSAGES = {
    "invalid_name": "名称：1 到 60 个字符",
    "invalid_kind": "请选择优惠券类型",
    "invalid_threshold": "门槛：请输入不小于 0 的金额",
    "invalid_amount_off": "满减券：减免金额必须大于 0，且不填折扣和一口价",
    "invalid_percent": "折扣券：折扣在 0.01%% 到 99.99%% 之间，且不填减免金额和一口价",
    "invalid_fixed_price": "一口价券：填写一口价，且适用范围为指定 SKU",
    "invalid_cap": "折扣封顶：留空或大于 0 的金额",
    "invalid_max_uses": "总张数：留空或不小于 1 的整数",
    "invalid_budget": "总预算：留空或大于 0 的金额",
    "invalid_grant_valid_days": "领取后有效天数：留空或不小于 1 的整数",
    "invalid_per_user_limit": "每人限用：1 到 100 张",
    "invalid_window": "结束时间必须晚于开始时间",
    "invalid_scope": "适用范围：全场券只填排除项；指定商品或 SKU 的券只填对应的列表，且都必须存在、不能重复",
    "invalid_campaign": "请选择活动用途",
    "invalid_code": "券码：10 到 32 位字母或数字",
    "invalid_owner": "出资达人不存在",
    "unknown_creator": "没有邀请码为 %(who)s 的达人",
    "coupon_code_taken": "这个券码已被其他优惠券使用",
    "coupon_inactive": "这张优惠券已停用",
    "coupon_expired": "这张优惠券已过期",
    "coupon_not_found": "优惠券不存在",
    "no_recipients": "请填写或上传至少一位用户",
    "too_many_recipients": "每批最多发放给 %(max)s 位用户",
    "invalid_recipient": "名单里有无法识别的用户：%(detail)s",
    "unknown_recipient": "名单里有不存在的用户：%(detail)s",
    "unknown_sku": "没有这个 SKU（或已下架）：%(sku)s",
    "invalid_target": "商品 ID 必须是整数：%(detail)s",
    "too_many_targets": "每个列表最多 %(max)s 项",
    "csv_too_large": "CSV 文件太大（最多 2 MB）",
    "csv_encoding": "CSV 文件必须是 UTF-8 编码",
    "activity_inactive": "这个拼团活动已停止",
    "activity_not_found": "拼团活动不存在",
    "invalid_title": "标题：1 到 60 个字符",
    "invalid_size": "成团人数：2 到 50 人",
    "invalid_window_s": "成团时限：1 分钟到 7 天",
    "invalid_group_price_fen": "拼团价：大于 0 且不高于零售价",
    "invalid_max_teams": "最多开团数：留空或不小于 1 的整数",
    "invalid_stock": "活动库存：留空或不少于成团人数",
    "refund_not_found": "这个订单没有退款",
    "refund_not_failing": "这笔退款已经成功，无需重试",
    "reason_required": "请填写原因（至少 2 个字）",
    "missing_action_token": "表单缺少一次性令牌，请刷新页面后重试",
}
KIND_LABELS = {CouponKind.AMOUNT_OFF.value: "满减券", CouponKind.PERCENT_OFF.value: "折扣券",
               CouponKind.FIXED_PRICE.value: "一口价券"}
SCOPE_LABELS = {Scope.SHELF.value: "全场", Scope.PRODUCT.value: "指定商品", Scope.SKU.value: "指定 SKU"}
_CAMPAIGN_NAMES = {"group_welcome": "社群新人券", "lottery_loser": "抽奖未中券", "wakeup": "沉睡唤醒券"}
CAMPAIGN_LABELS = {c: _CAMPAIGN_NAMES.get(c, c) for c in CAMPAIGNS}



class FormError(InvalidInput):
    """A typed value that cannot be read; `params` fill the operator's message."""

    def __init__(self, message: str, *, code: str, **params: object) -> None:
        super().__init__(message, code=code)
        self.params = params


def message_of(exc: DomainError) -> str:
    """A refusal as a sentence in the operator's language (the service's own text when unknown)."""
    if isinstance(exc, CatalogInputError):
        return catalog_message(exc)
    template = MESSAGES.get(exc.code)
    if template is None:
        return exc.message
    last = exc.message.rsplit(" ", 1)[-1].strip("'\"")
    params: dict[str, Any] = {"detail": exc.message.split(": ", 1)[-1], "max": "", "sku": last, "who": ""}
    params.update(getattr(exc, "params", {}) or {})
    return _(template, **params)


def _text(name: str) -> str:
    return (request.form.get(name) or "").strip()


def _yuan(name: str, field: str, *, optional: bool = True) -> int | None:
    text = _text(name)
    if not text:
        return None if optional else 0
    return yuan_to_fen(text, field)


def _whole(name: str, *, default: int | None = None) -> int | None:
    text = _text(name)
    if not text:
        return default
    if not text.isdigit() or len(text) > 9:
        raise CatalogInputError(f"{name}: not a whole number", code="integer_format", field=name)
    return int(text)


def _lines(name: str) -> list[str]:
    items = [t.strip() for t in _text(name).replace("，", ",").replace(",", "\n").splitlines() if t.strip()]
    if len(items) > TARGETS_MAX:
        raise FormError("too many targets", code="too_many_targets", max=TARGETS_MAX)
    return items


def product_ids(name: str) -> tuple[int, ...]:
    items = _lines(name)
    bad = [i for i in items if not i.isdigit() or len(i) > 18]
    if bad:
        raise FormError(f"not product ids: {', '.join(bad[:5])}", code="invalid_target")
    return tuple(dict.fromkeys(int(i) for i in items))


def sku_ids(name: str) -> tuple[int, ...]:
    codes = list(dict.fromkeys(_lines(name)))
    if not codes:
        return ()
    found = dict(Sku.select(Sku.code, Sku.id).where(Sku.code.in_(codes)).tuples())
    missing = [c for c in codes if c not in found]
    if missing:
        raise FormError(f"unknown SKU {missing[0]}", code="unknown_sku", sku=missing[0][:64])
    return tuple(found[c] for c in codes)


def creator_id(code: str) -> int | None:
    code = (code or "").strip()
    if not code:
        return None
    found = Creator.get_or_none(Creator.code == code)
    if found is None:
        raise FormError(f"no creator {code}", code="unknown_creator", who=code[:32])
    return found.id


def coupon_spec(tz: str) -> CouponSpec:
    """The create form as a CouponSpec (the service validates the whole)."""
    kind = _text("kind")
    percent = _text("percent")
    return CouponSpec(
        name=_text("name"), kind=kind,
        starts_at=_naive(local_start(_text("starts"), tz)), ends_at=_naive(local_start(_text("ends"), tz)),
        threshold_fen=_yuan("threshold", "threshold_fen", optional=False) or 0,
        amount_off_fen=_yuan("amount_off", "amount_off_fen", optional=False) or 0,
        percent_bp=percent_to_bp(percent, "percent_bp") if percent else 0,
        cap_fen=_yuan("cap", "cap_fen"), fixed_price_fen=_yuan("fixed_price", "fixed_price_fen"),
        scope=_text("scope") or Scope.SHELF.value,
        include_products=product_ids("include_products"), include_skus=sku_ids("include_skus"),
        exclude_products=product_ids("exclude_products"), exclude_skus=sku_ids("exclude_skus"),
        code=_text("code") or None, owner_creator_id=creator_id(_text("owner")),
        campaign=_text("campaign") or None, grant_valid_days=_whole("grant_valid_days"),
        max_uses=_whole("max_uses"), budget_fen=_yuan("budget", "budget_fen"),
        per_user_limit=_whole("per_user_limit", default=1) or 0,
        new_buyers_only=bool(request.form.get("new_buyers_only")), stackable=bool(request.form.get("stackable")))


def activity_spec(tz: str) -> ActivitySpec:
    """The create form of a group-buy activity (the window in minutes, the price in yuan)."""
    minutes = _whole("window_minutes", default=0) or 0
    return ActivitySpec(
        sku_code=_text("sku"), title=_text("title"), size=_whole("size", default=0) or 0, window_s=minutes * 60,
        group_price_fen=_yuan("group_price", "group_price_fen", optional=False) or 0,
        starts_at=_naive(local_start(_text("starts"), tz)), ends_at=_naive(local_start(_text("ends"), tz)),
        per_user_limit=_whole("per_user_limit", default=1) or 0, max_teams=_whole("max_teams"),
        stock=_whole("stock"), leader_must_be_new=bool(request.form.get("leader_must_be_new")),
        virtual_complete=bool(request.form.get("virtual_complete")))


def _naive(moment: dt.datetime) -> dt.datetime:
    """An aware wall time as the naive UTC the tables store."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def recipients_text() -> str:
    """The pasted list plus an uploaded CSV's text (UTF-8, at most UPLOAD_MAX bytes)."""
    text = request.form.get("recipients") or ""
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        data = upload.stream.read(UPLOAD_MAX + 1)
        if len(data) > UPLOAD_MAX:
            raise FormError("CSV too large", code="csv_too_large")
        try:
            text += "\n" + data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FormError("CSV not UTF-8", code="csv_encoding") from None
    return text
