"""The coupons admin over real HTTP: the list (code, kind, funder, window, uses / max, spent /
budget, active), creating a coupon from the form (scope by SKU codes with exclusions, a
creator's coupon, a campaign), issuing it to a pasted list or a CSV of shoppers (once per form,
a list with one unknown shopper refused whole), the redemptions page, withdrawing it — each
audited, a bad form refused with a message and nothing written."""

from __future__ import annotations

import datetime as dt
import io
import re
from zoneinfo import ZoneInfo

import pytest

from models import coupons
from models.audit import AuditEntry
from models.coupons import Coupon, CouponGrant, CouponScope
from models.db import db, utcnow
from models.errors import Conflict
from tests.factories import buyer, coupon, creator, granted, with_coupons

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = "/admin/promo/coupons"
ACTION = re.compile(rb'name="action_token" value="([^"]+)"')


def local(moment: dt.datetime) -> str:
    return moment.replace(tzinfo=dt.UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def audits(action: str) -> list[AuditEntry]:
    with db.connection_context():
        return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def counts() -> tuple[int, int, int]:
    with db.connection_context():
        return Coupon.select().count(), CouponScope.select().count(), CouponGrant.select().count()


def grants_of(coupon_id: int) -> list[tuple[int, str]]:
    with db.connection_context():
        return sorted((g.user_id, g.source) for g in CouponGrant.select().where(CouponGrant.coupon == coupon_id))


def form(**over: str) -> dict[str, str]:
    now = utcnow()
    base = {"name": "双十二满减", "kind": "amount_off", "threshold": "100", "amount_off": "20", "scope": "shelf",
            "starts": local(now - dt.timedelta(hours=1)), "ends": local(now + dt.timedelta(days=7)),
            "per_user_limit": "1", "max_uses": "50", "budget": "500"}
    base.update(over)
    return base


def test_ops_creates_a_sku_scoped_creator_coupon_and_the_list_shows_it(admin, shop):
    ops = admin("ops")
    a, b = shop.card_sku(code="MASK-A"), shop.card_sku(code="MASK-B")
    host = creator(name="林小满")
    # when ops creates a 15%-off coupon (cap 30 yuan) on two SKUs, funded by a creator, with a claim code
    answer = ops.post(f"{BASE}/new", form(kind="percent_off", threshold="", amount_off="", percent="15", cap="30",
                                          scope="sku", include_skus="MASK-A\nMASK-B", owner=host.code,
                                          code="qx-winter-2026", reason="达人专属"), page=f"{BASE}/new")
    # then the coupon is written whole: its terms, its scope rows, the creator funding it
    assert answer.status_code == 302, answer.data[:800]
    with db.connection_context():
        made = Coupon.get(Coupon.name == "双十二满减")
        targets = sorted((t.target, t.target_id, t.exclude)
                         for t in CouponScope.select().where(CouponScope.coupon == made))
    assert (made.kind, made.percent_bp, made.cap_fen, made.scope) == ("percent_off", 1500, 3000, "sku")
    assert (made.code, made.owner_creator_id, made.max_uses, made.budget_fen) == ("QXWINTER2026", host.id, 50, 50_000)
    assert targets == [("sku", a.id, False), ("sku", b.id, False)]
    assert [e.object for e in audits("coupon.create")] == ["coupon:new"]
    # and the list shows its code, terms, funder, uses / max and spent / budget
    page = ops.get(f"{BASE}/").data.decode()
    row = re.search(rf'<tr data-coupon="{made.id}".*?</tr>', page, re.S).group(0)
    assert "QXWINTER2026" in row and host.code in row and "0 / 50" in row and "15%" in row
    assert "¥0.00 / ¥500.00" in row


def test_a_shelf_coupon_with_exclusions_for_a_campaign(admin, shop):
    ops = admin("ops")
    skip, other = shop.card_sku(code="NO-DISCOUNT"), shop.card_sku(code="OTHER")
    # when ops creates the wake-up campaign's shelf-wide coupon excluding a SKU and a product
    answer = ops.post(f"{BASE}/new", form(name="回归礼", campaign="wakeup", exclude_skus="NO-DISCOUNT",
                                          exclude_products=str(other.product_id), grant_valid_days="7",
                                          new_buyers_only="", stackable="1"), page=f"{BASE}/new")
    assert answer.status_code == 302, answer.data[:600]
    # then it is the wake-up campaign's coupon, its exclusions written
    with db.connection_context():
        made = coupons.campaign_coupon("wakeup")
        targets = sorted((t.target, t.target_id, t.exclude)
                         for t in CouponScope.select().where(CouponScope.coupon == made))
    assert made.name == "回归礼" and made.grant_valid_days == 7 and made.stackable
    assert targets == [("product", other.product_id, True), ("sku", skip.id, True)]
    assert "沉睡唤醒券" in ops.get(f"{BASE}/").data.decode()


@pytest.mark.parametrize("over, text", [
    ({"amount_off": "abc"}, "请输入以元为单位的金额"),
    ({"amount_off": "0"}, "减免金额必须大于 0"),
    ({"ends": "2020-01-01 00:00"}, "结束时间必须晚于开始时间"),
    ({"starts": "明天"}, "开播时间格式"),
    ({"scope": "sku", "include_skus": "NO-SUCH-SKU"}, "没有这个 SKU"),
    ({"kind": "fixed_price", "amount_off": "", "fixed_price": "9.9"}, "一口价券"),
    ({"name": ""}, "名称"),
    ({"code": "short"}, "券码"),
    ({"owner": "NOBODY"}, "没有邀请码为 NOBODY 的达人"),
    ({"include_products": "abc"}, "商品 ID 必须是整数"),
    ({"max_uses": "-1"}, "请输入整数"),
])
def test_a_bad_coupon_form_is_refused_with_a_message_and_writes_nothing(admin, over, text):
    ops = admin("ops")
    before = counts()
    # when the form has one bad value
    answer = ops.post(f"{BASE}/new", form(**over), page=f"{BASE}/new")
    # then the form comes back with the message, and no coupon, scope row or audit row is written
    assert answer.status_code == 400, answer.data[:400]
    assert text in answer.data.decode()
    assert counts() == before and audits("coupon.create") == []


def test_a_taken_claim_code_is_refused(admin):
    coupon(code="WINTER-CODE-2026")
    ops = admin("ops")
    before = counts()
    answer = ops.post(f"{BASE}/new", form(code="winter code 2026"), page=f"{BASE}/new")
    assert answer.status_code == 400 and "这个券码已被其他优惠券使用" in answer.data.decode()
    assert counts() == before


def test_issue_to_a_pasted_list_and_a_csv_once_per_form(admin):
    made = coupon(name="老客回馈")
    users = [buyer(f"list-{i}") for i in range(4)]
    ops = admin("ops")
    page = ops.get(f"{BASE}/{made.id}").data
    token = ACTION.findall(page)[0].decode()  # the issue form's one-time token
    csv = io.BytesIO(f"openid\n{users[2].openid}\n{users[3].openid}\n".encode())
    data = {"recipients": f"{users[0].id}\n{users[1].openid}, {users[0].id}", "reason": "客服补偿",
            "action_token": token, "file": (csv, "list.csv")}
    # when ops issues the coupon to two pasted shoppers (one twice) and two from a CSV
    answer = ops.post(f"{BASE}/{made.id}/issue", data, page=f"{BASE}/{made.id}", content_type="multipart/form-data")
    assert answer.status_code == 302, answer.data[:600]
    # then each of the four has one grant from the operator
    assert grants_of(made.id) == sorted((u.id, "operator") for u in users)
    assert "已发放 4 张" in ops.get(f"{BASE}/{made.id}").data.decode()
    # and the same form sent again (the same token) issues nothing more
    again = {"recipients": f"{users[0].id}\n{users[1].openid}", "reason": "客服补偿", "action_token": token}
    ops.post(f"{BASE}/{made.id}/issue", again, page=f"{BASE}/{made.id}")
    assert len(grants_of(made.id)) == 4
    entry = audits("coupon.issue")
    assert len(entry) == 1 and entry[0].after["granted"] == 4 and entry[0].reason == "客服补偿"


def test_a_list_with_one_unknown_shopper_issues_nothing(admin):
    made = coupon()
    known = buyer("known-fan")
    ops = admin("ops")
    # when the list names a known shopper, an unknown openid and a malformed entry
    for recipients, text in ((f"{known.id}\nghost-openid-1", "不存在的用户"), (f"{known.id}\n<script>", "无法识别"),
                             ("", "请填写或上传至少一位用户"), (f"{known.id}\n999999999", "不存在的用户")):
        answer = ops.post(f"{BASE}/{made.id}/issue", {"recipients": recipients, "reason": "补发"},
                          page=f"{BASE}/{made.id}")
        # then the page says why, and nobody (not even the known shopper) gets the coupon
        assert answer.status_code == 400 and text in answer.data.decode(), recipients
    assert grants_of(made.id) == [] and audits("coupon.issue") == []
    # and a reason is required
    answer = ops.post(f"{BASE}/{made.id}/issue", {"recipients": str(known.id)}, page=f"{BASE}/{made.id}")
    assert answer.status_code == 400 and grants_of(made.id) == []


def test_redemptions_show_order_discount_funder_and_state(admin, shop):
    sku = shop.card_sku(price=5_000)
    host = creator(name="小满")
    platform = coupon(name="平台券", amount_off_fen=500)
    theirs = coupon(name="达人券", amount_off_fen=300, owner_creator_id=host.id)
    fan = buyer("redeem-fan")
    order = with_coupons(sku, granted(platform, fan), fan)
    with_coupons(sku, granted(theirs, fan), fan, ref=host.code)
    ops = admin("readonly")
    # when an operator opens each coupon's page
    page = ops.get(f"{BASE}/{platform.id}").data.decode()
    row = re.search(rf'<tr data-order="{order.no}".*?</tr>', page, re.S).group(0)
    # then the redemption shows the order, its discount, who funds it and its state
    assert "¥5.00" in row and "平台" in row and 'data-state="reserved"' in row
    creator_row = ops.get(f"{BASE}/{theirs.id}").data.decode()
    assert host.code in creator_row and "¥3.00" in creator_row
    # and a read-only operator sees no action form
    assert 'id="issue-form"' not in page and 'id="deactivate-form"' not in page


def test_withdrawing_a_coupon_stops_claims_and_is_audited_once(admin):
    made = coupon(code="STOP-ME-NOW-2026")
    ops = admin("ops")
    # when ops withdraws it without a reason, then with one
    bare = ops.post(f"{BASE}/{made.id}/deactivate", {}, page=f"{BASE}/{made.id}")
    assert bare.status_code == 400 and "请填写原因" in bare.data.decode()
    answer = ops.post(f"{BASE}/{made.id}/deactivate", {"reason": "预算用完"}, page=f"{BASE}/{made.id}")
    assert answer.status_code == 302
    # then it is inactive, a claim by its code is refused, and it was audited once
    with db.connection_context():
        assert not Coupon.get_by_id(made.id).active
        with pytest.raises(Conflict):
            coupons.claim(buyer("late-claimer").id, "STOP-ME-NOW-2026")
    assert [(e.before["active"], e.after["active"]) for e in audits("coupon.deactivate")] == [(True, False)]
    # and withdrawing it again says so, writing nothing
    again = ops.post(f"{BASE}/{made.id}/deactivate", {"reason": "再试一次"}, page=f"{BASE}/{made.id}")
    assert again.status_code == 409 and len(audits("coupon.deactivate")) == 1


def test_readonly_and_support_cannot_change_coupons(admin):
    made = coupon()
    fan = buyer("role-fan")
    for role in ("readonly", "support", "finance"):
        who = admin(role)
        assert who.post(f"{BASE}/{made.id}/issue", {"recipients": str(fan.id), "reason": "x" * 3},
                        page="/admin/").status_code == 403
        assert who.post(f"{BASE}/{made.id}/deactivate", {"reason": "xxx"}, page="/admin/").status_code == 403
        assert who.post(f"{BASE}/new", form(), page="/admin/").status_code == 403
    assert grants_of(made.id) == [] and counts()[0] == 1
    assert admin("support").get(f"{BASE}/").status_code == 403
