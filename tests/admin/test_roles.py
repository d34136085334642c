"""Every role's forbidden actions answer 403 and change nothing, for every state-changing admin
route: the table below names the permission of each; a route missing from it fails the test, so
a new page cannot skip this check."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import peewee as pw
import pytest

from models.db import db
from models.operators import ROLE_PERMISSIONS, Role
from tests.conftest import TABLES
from tests.factories import Shop, creator, due_withdrawal, operator, paid

# Routes any signed-in operator (or a person signing in) may post to.
OPEN = {"admin_auth.login", "admin_auth.logout", "admin_auth.lang", "admin_auth.password",
        "admin_auth.enrol", "admin_auth.totp"}
NEVER = None  # no role, not even the owner, may do this (generic edits of an append-only log)


@dataclass(frozen=True)
class Route:
    endpoint: str
    permission: str | None
    url: Callable[[dict], str]
    data: Callable[[dict], dict]


def _csv() -> dict:
    return {"file": (io.BytesIO(b"key\nROLE-TEST-KEY-1\n"), "keys.csv")}


def _sku_form(w: dict) -> dict:
    return {"product": str(w["product"]), "code": "ROLE-NEW", "kind": "card_key", "name": "x",
            "retail_price": "10.00", "supply_price": "5.00", "commission": "10", "reason": "role test",
            "active": "1"}


ROUTES = [
    Route("activity.upload", "activity.import", lambda w: "/admin/activity/upload",
          lambda w: {"file": (io.BytesIO(b"creator_code,kind,ref,count,occurred_at\n"), "a.csv")}),
    Route("audit.create_view", NEVER, lambda w: "/admin/audit/new/", lambda w: {"action": "x"}),
    Route("audit.edit_view", NEVER, lambda w: f"/admin/audit/edit/?id={w['audit']}", lambda w: {"reason": "x"}),
    Route("audit.delete_view", NEVER, lambda w: "/admin/audit/delete/", lambda w: {"id": w["audit"]}),
    Route("audit.action_view", NEVER, lambda w: "/admin/audit/action/",
          lambda w: {"action": "delete", "rowid": w["audit"]}),
    Route("audit.ajax_update", NEVER, lambda w: "/admin/audit/ajax/update/",
          lambda w: {"list_form_pk": w["audit"], "reason": "x"}),
    Route("products.create_view", "catalog.edit", lambda w: "/admin/catalog/products/new/",
          lambda w: {"title": "role product", "description": "", "active": "1"}),
    Route("products.edit_view", "catalog.edit", lambda w: f"/admin/catalog/products/edit/?id={w['product']}",
          lambda w: {"title": "renamed", "reason": "role test"}),
    Route("products.delete_view", NEVER, lambda w: "/admin/catalog/products/delete/",
          lambda w: {"id": w["product"]}),
    Route("products.action_view", NEVER, lambda w: "/admin/catalog/products/action/",
          lambda w: {"action": "delete", "rowid": w["product"]}),
    Route("products.ajax_update", NEVER, lambda w: "/admin/catalog/products/ajax/update/",
          lambda w: {"list_form_pk": w["product"], "title": "x"}),
    Route("skus.create_view", "catalog.edit", lambda w: "/admin/catalog/skus/new/", _sku_form),
    Route("skus.edit_view", "catalog.edit", lambda w: f"/admin/catalog/skus/edit/?id={w['sku']}",
          lambda w: {"name": "renamed", "retail_price": "99.00", "supply_price": "5.00", "commission": "10",
                     "reason": "role test", "active": "1"}),
    Route("skus.delete_view", NEVER, lambda w: "/admin/catalog/skus/delete/", lambda w: {"id": w["sku"]}),
    Route("skus.action_view", NEVER, lambda w: "/admin/catalog/skus/action/",
          lambda w: {"action": "delete", "rowid": w["sku"]}),
    Route("skus.ajax_update", NEVER, lambda w: "/admin/catalog/skus/ajax/update/",
          lambda w: {"list_form_pk": w["sku"], "name": "x"}),
    Route("skus.set_active", "catalog.edit", lambda w: f"/admin/catalog/skus/{w['sku']}/active",
          lambda w: {"active": "0", "reason": "role test"}),
    Route("skus.bundle", "catalog.edit", lambda w: f"/admin/catalog/skus/{w['sku']}/bundle",
          lambda w: {"component": "x", "quantity": "1", "reason": "role test"}),
    Route("skus.restock", "catalog.edit", lambda w: f"/admin/catalog/skus/{w['sku']}/restock",
          lambda w: {"quantity": "5", "reason": "role test"}),
    Route("broadcasts.send", "chat.broadcast", lambda w: "/admin/chat/broadcasts/send",
          lambda w: {"audience": "platform", "platform": "telegram", "text": "hello", "reason": "role test"}),
    Route("broadcasts.requeue", "chat.broadcast", lambda w: "/admin/chat/broadcasts/1/requeue",
          lambda w: {"reason": "role test"}),
    Route("chat_failed.retry", "chat.retry", lambda w: "/admin/chat/failed/retry",
          lambda w: {"kind": "message", "id": "1", "reason": "role test"}),
    Route("chat_groups.save", "chat.edit", lambda w: "/admin/chat/groups/save",
          lambda w: {"scope": "console:role", "title": "x", "reason": "role test"}),
    Route("chat_rules.add", "chat.edit", lambda w: "/admin/chat/rules/add",
          lambda w: {"scope": "console:role", "match": "contains", "pattern": "hi", "reply": "hello",
                     "priority": "0", "reason": "role test"}),
    Route("chat_rules.edit", "chat.edit", lambda w: "/admin/chat/rules/1/edit",
          lambda w: {"match": "contains", "pattern": "hi", "reply": "hello", "reason": "role test"}),
    Route("chat_rules.toggle", "chat.edit", lambda w: "/admin/chat/rules/1/disable", lambda w: {"reason": "x y"}),
    Route("creators.lift", "creators.manage", lambda w: f"/admin/creators/{w['creator']}/lift-penalty",
          lambda w: {"reason": "role test"}),
    Route("creators.penalize", "creators.manage", lambda w: f"/admin/creators/{w['creator']}/penalize",
          lambda w: {"to_rank": "0", "reason": "role test"}),
    Route("creators.rank", "creators.manage", lambda w: f"/admin/creators/{w['creator']}/rank",
          lambda w: {"rank": "1", "reason": "role test"}),
    Route("creators.rebind", "creators.manage", lambda w: f"/admin/creators/{w['creator']}/rebind",
          lambda w: {"detach": "1", "reason": "role test"}),
    Route("jobs.failed", "jobs.retry", lambda w: "/admin/jobs/failed/nope/retry", lambda w: {"reason": "x y"}),
    Route("ledger.verify", "ledger.verify", lambda w: "/admin/ledger/verify", lambda w: {}),
    Route("operators.act", "operators.manage", lambda w: f"/admin/operators/{w['victim']}/disable",
          lambda w: {"reason": "role test"}),
    Route("operators.create", "operators.manage", lambda w: "/admin/operators/create",
          lambda w: {"name": "role-made", "role": "owner"}),
    Route("admin.refresh", "dashboard.refresh", lambda w: "/admin/refresh", lambda w: {}),
    Route("vault.rotate", "vault.rotate", lambda w: "/admin/vault/rotation", lambda w: {"reason": "role test"}),
    Route("vault.upload", "vault.import", lambda w: "/admin/vault/upload",
          lambda w: {"sku": str(w["sku"]), "reason": "role test", **_csv()}),
    Route("withdrawals.approve", "withdrawals.approve", lambda w: f"/admin/withdrawals/{w['withdrawal']}/approve",
          lambda w: {"reason": "role test"}),
    Route("withdrawals.reject", "withdrawals.reject", lambda w: f"/admin/withdrawals/{w['withdrawal']}/reject",
          lambda w: {"reason": "role test"}),
]
ROUTES += [Route(f"live_admin.{name}", "live.manage", lambda w, u=url: f"/admin/live/sessions{u}",
                 lambda w: {"creator": "nobody", "start": "2030-01-01 20:00", "reason": "role test"})
           for name, url in (("create", "/new"), ("reschedule", "/1/reschedule"), ("cancel", "/1/cancel"),
                             ("start", "/1/start"), ("end", "/1/end"))]
ROUTES += [Route(f"drama.{name}", "live.manage", lambda w, u=url: f"/admin/live/drama{u}",
                 lambda w: {"title": "role test", "number": "1", "video_url": "https://x.example/1.mp4"})
           for name, url in (("edit_series", "/1/edit"), ("add_episode", "/1/episodes"),
                             ("edit_episode", "/1/episodes/1"))]
ROUTES += [Route("set_aside.retry", perm, lambda w, j=job: f"/admin/orders/set-aside/{j}/{w['order']}/retry",
                 lambda w: {"reason": "role test"})
           for job, perm in (("delivery", "orders.redeliver"), ("settlement", "orders.retry_settlement"))]
ROUTES += [Route(f"live_dashboard.{name}", "live.manage", lambda w, u=url: f"/admin/live/dashboard{u}",
                 lambda w: {"reason": "role test", "text": "role test", "lead_s": "60", "enabled": "1"})
           for name, url in (("reconcile", "/1/reconcile"), ("close_poll", "/polls/1/close"), ("rule", "/rules/1"))]
ORDER_ACTIONS = {"mark_paid": "orders.mark_paid", "refund": "orders.refund", "redeliver": "orders.redeliver",
                 "resend": "orders.resend", "hold": "orders.hold", "release": "orders.hold",
                 "fraud": "orders.fraud"}
ROUTES += [Route(f"coupons_admin.{name}", "promo.manage", lambda w, u=url: f"/admin/promo/coupons{u}",
                 lambda w: {"name": "role test", "kind": "amount_off", "amount_off": "5", "starts": "2030-01-01 00:00",
                            "ends": "2030-02-01 00:00", "recipients": "1", "reason": "role test"})
           for name, url in (("create", "/new"), ("deactivate", "/1/deactivate"), ("issue", "/1/issue"))]
ROUTES += [Route(f"groupbuy_admin.{name}", perm, lambda w, u=url: f"/admin/promo/groupbuy{u}",
                 lambda w: {"sku": "nope", "title": "role test", "size": "3", "group_price": "1",
                            "window_minutes": "60", "starts": "2030-01-01 00:00", "ends": "2030-02-01 00:00",
                            "reason": "role test"})
           for name, url, perm in (("create", "/new", "promo.manage"), ("deactivate", "/1/deactivate", "promo.manage"),
                                   ("retry", "/refunds/1/retry", "promo.refund_retry"))]
ROUTES += [Route("refund_requests.decide", "orders.refund",
                 lambda w, d=decision: f"/admin/orders/refund-requests/1/{d}", lambda w: {"reason": "role test"})
           for decision in ("approve", "reject")]
ROUTES += [Route(f"categories.{name}", "catalog.edit", lambda w, u=url: f"/admin/catalog/categories{u}",
                 lambda w: {"name": "role test", "sort": "1", "reason": "role test"})
           for name, url in (("create", "/new"), ("edit", "/1/edit"), ("assign", "/assign"))]
ROUTES += [Route(f"risk_cases.{name}", "risk.decide", lambda w, n=name: f"/admin/risk/cases/1/{n}",
                 lambda w: {"note": "role test", "to": "me", "until": "2099-01-01", "codes": "burst_orders"})
           for name in ("assign", "clear", "confirm", "allowlist")]
ROUTES += [Route("risk_rules.edit", "risk.rules", lambda w: "/admin/risk/rules/burst_orders/edit",
                 lambda w: {"params": "{}", "weight": "51", "enabled": "1", "reason": "role test"}),
           Route("risk_penalties.lift", "risk.decide", lambda w: "/admin/risk/penalties/1/lift",
                 lambda w: {"reason": "role test"}),
           Route("risk_allow.revoke", "risk.decide", lambda w: "/admin/risk/allow/1/revoke",
                 lambda w: {"reason": "role test"})]
ROUTES += [Route(f"content_faq.{n}", "content.manage", lambda w, u=u: f"/admin/content/faq{u}",
                 lambda w: {"question": "role test", "answer": "role test", "position": "0"})
           for n, u in (("create", "/new"), ("edit", "/1/edit"), ("disable", "/1/disable"))]
ROUTES += [Route("moderation_words.add", "content.manage", lambda w: "/admin/content/moderation/words/add",
                 lambda w: {"kind": "sensitive", "word": "角色测试词", "reason": "role test"}),
           Route("moderation_words.import_", "content.manage", lambda w: "/admin/content/moderation/words/import",
                 lambda w: {"kind": "sensitive", "lines": "角色测试词", "reason": "role test"}),
           Route("moderation_words.edit", "content.manage", lambda w: "/admin/content/moderation/words/1/edit",
                 lambda w: {"word": "角色测试词", "action": "block", "reason": "role test"}),
           Route("moderation_decisions.review", "content.review",
                 lambda w: "/admin/content/moderation/decisions/1/review", lambda w: {"reason": "role test"})]
ROUTES += [Route("handoff.answer", "content.handoff", lambda w: "/admin/content/handoff/1/answer",
                 lambda w: {"answer": "role test"}),
           Route("handoff.close", "content.handoff", lambda w: "/admin/content/handoff/1/close",
                 lambda w: {"reason": "role test"})]
ROUTES += [Route("scripts.create", "content.manage", lambda w: "/admin/content/scripts/new",
                 lambda w: {"creator": "nobody", "sku": "nope", "topic": "role test"}),
           Route("scripts.approve", "content.review", lambda w: "/admin/content/scripts/1/approve",
                 lambda w: {"note": "role test"}),
           Route("scripts.reject", "content.review", lambda w: "/admin/content/scripts/1/reject",
                 lambda w: {"note": "role test"})]
ROUTES += [Route("hot_topics.upload", "content.manage", lambda w: "/admin/content/hot-topics/upload",
                 lambda w: {"file": (io.BytesIO("追剧\n".encode()), "topics.csv")}),
           Route("hot_topics.from_url", "content.manage", lambda w: "/admin/content/hot-topics/url",
                 lambda w: {"url": "http://127.0.0.1:9/x"}),
           Route("hot_topics.repair", "content.manage", lambda w: "/admin/content/hot-topics/1/repair",
                 lambda w: {"reason": "role test"})]
ROUTES += [Route("live_talk.generate", "content.manage", lambda w: "/admin/content/talk/1", lambda w: {})]
ROUTES += [Route("orders.act", perm, lambda w, a=action: f"/admin/orders/{w['order']}/{a}",
                 lambda w: {"reason": "role test", "reference": "role-ref"})
           for action, perm in ORDER_ACTIONS.items()]


def fingerprint() -> list[tuple[str, int, int]]:
    """Row count and highest id of every table, and a checksum of every order's status: any
    write shows."""
    out = []
    with db.connection_context():
        for model in TABLES:
            pk = model._meta.primary_key
            if isinstance(pk, pw.AutoField | pw.BigAutoField):
                count, top = model.select(pw.fn.COUNT(pk), pw.fn.MAX(pk)).scalar(as_tuple=True)
            else:
                count, top = model.select().count(), 0
            out.append((model._meta.table_name, count, top or 0))
        from models.orders import Order

        out.append(("order-status", 0, hash(tuple(Order.select(Order.id, Order.status, Order.risk_hold).tuples()))))
    return out


def test_every_state_changing_route_is_in_the_table(app):
    posted = {r.endpoint for r in app.url_map.iter_rules() if r.rule.startswith("/admin") and "POST" in r.methods}
    assert posted - OPEN == {r.endpoint for r in ROUTES}


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_forbidden_actions_answer_403_and_change_nothing(admin, role: str, rt):
    # given a small business: a product and SKU with keys, a delivered order, a creator, a
    # withdrawal waiting for review, another operator
    shop = Shop()
    sku = shop.card_sku(keys=3)
    order_id = paid(sku.code)
    made = creator("role-creator")
    w = due_withdrawal(600_000)
    with db.connection_context():
        victim, _ = operator("support", "victim")
    who = admin(role)
    with db.connection_context():
        from models.audit import AuditEntry

        world = {"product": sku.product_id, "sku": sku.id, "order": order_id, "creator": made.id,
                 "withdrawal": w.id, "victim": victim.id, "audit": AuditEntry.select().first().id}
    allowed = ROLE_PERMISSIONS[Role(role)]
    forbidden = [r for r in ROUTES if r.permission is NEVER or r.permission not in allowed]
    assert forbidden or role == "owner"
    # when the operator posts each forbidden action, with a valid CSRF token and action token
    for route in forbidden:
        before = fingerprint()
        answer = who.post(route.url(world), route.data(world), content_type="multipart/form-data")
        # then it is refused with 403 and nothing changed
        assert answer.status_code == 403, (role, route.endpoint, answer.status_code, answer.data[:300])
        assert fingerprint() == before, (role, route.endpoint)
