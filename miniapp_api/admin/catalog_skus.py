"""Catalog pages: SKUs (list with search and filters; create, edit, details with events, bundle
composition, stock and vault counts; activate / deactivate, restock, bundle parts). No delete.

Every form runs ONE service of models/catalog_edits.py through `perform` (once per form,
audited, in one transaction with the service's events). After a SKU change this process's
order-path cache is dropped (`orders.forget_cached_skus`); other processes hold it at most its
TTL (5 s), and the PostgreSQL order function re-reads price and active flags in the order's own
transaction. Registered by miniapp_api/admin/catalog.py.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.peewee.filters import BooleanEqualFilter, FilterEqual
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from miniapp_api.admin.actions import form_reason, perform
from miniapp_api.admin.base import QxModelView
from miniapp_api.admin.catalog_forms import (
    FIELD_LABELS,
    KIND_LABELS,
    actor,
    bundle_lines,
    done,
    form_defaults,
    form_int,
    message_of,
    percent,
    sku_values,
)
from miniapp_api.admin.security import must
from miniapp_api.deps import runtime
from models import catalog, events, inventory, orders, vault
from models import catalog_edits as edits
from models.catalog import Kind, Product, Sku
from models.catalog_edits import CatalogInputError
from models.errors import DomainError
from models.money import yuan


def warn_bundles(sku: Sku) -> None:
    """After a SKU went off sale: warn that the bundles on sale still contain it."""
    if sku.active:
        return
    live = [b.code for b in edits.bundles_containing(sku) if b.active]
    if live:
        flash(_("注意：这些在售礼包仍包含 %(sku)s，会继续随礼包售出：%(bundles)s", sku=sku.code,
                bundles=", ".join(live)), "warning")


class SkuView(QxModelView):
    """SKUs: list with search and filters; create, edit, details (events, bundle composition,
    stock, vault counts), activate / deactivate, restock. No delete."""

    permission = "catalog.view"
    create_permission = edit_permission = "catalog.edit"
    audit_name = "sku"
    column_list = ("code", "name", "product", "kind", "retail_price_fen", "supply_price_fen", "commission_bp",
                   "active")
    column_labels = {"code": _l("编码"), "name": _l("名称"), "product": _l("商品"), "kind": _l("类型"),
                     "retail_price_fen": _l("零售价（元）"), "supply_price_fen": _l("供货价（元）"),
                     "commission_bp": _l("佣金比例"), "active": _l("在售")}
    column_formatters = {
        "code": lambda v, c, m, n: Markup('<a href="{}">{}</a>').format(url_for(".details_view", id=m.id), m.code),
        "product": lambda v, c, m, n: m.product.title,
        "kind": lambda v, c, m, n: _(KIND_LABELS.get(m.kind, m.kind)),
        "retail_price_fen": lambda v, c, m, n: yuan(m.retail_price_fen),
        "supply_price_fen": lambda v, c, m, n: yuan(m.supply_price_fen),
        "commission_bp": lambda v, c, m, n: f"{percent(m.commission_bp)}%",
    }
    column_sortable_list = ("code", "retail_price_fen", "active")
    column_searchable_list = ("code", "name")
    column_filters = (FilterEqual(Sku.kind, _l("类型"), options=[(k.value, k.value) for k in Kind]),
                      BooleanEqualFilter(Sku.active, _l("在售")))
    column_default_sort = ("id", True)
    form_columns = ("name",)

    def get_query(self) -> Any:
        return Sku.select(Sku, Product).join(Product)

    def _sku(self, sku_id: Any) -> Sku:
        sku = self.get_one(sku_id)
        if sku is None:
            abort(404)
        return sku

    def _form(self, sku: Sku | None, values: dict[str, str], status: int = 200) -> Any:
        products = list(Product.select().order_by(Product.id.desc()).limit(500))
        return self.render("qx/catalog_sku_form.html", sku=sku, values=values, products=products,
                           kinds=KIND_LABELS), status

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        must("catalog.edit")
        if request.method == "GET":
            return self._form(None, {**form_defaults(None), "product": request.args.get("product", "")})
        f = request.form
        try:
            pid = (f.get("product") or "").strip()
            product = Product.get_or_none(Product.id == int(pid)) if pid.isdigit() and len(pid) < 12 else None
            if product is None:
                raise CatalogInputError("no product", code="unknown_product", field="product")
            values = sku_values(creating=True)
            kind, code = f.get("kind") or "", (f.get("code") or "").strip()
            parts = bundle_lines(f.get("bundle") or "") if kind == Kind.BUNDLE else None
            serial = (f.get("serial") or "").strip() if kind == Kind.SERIAL else None
            if serial is not None and (not serial or len(serial) > vault.MAX_KEY_LENGTH or not serial.isprintable()
                                       or serial.startswith(vault.FORMULA_START)):
                raise CatalogInputError("bad serial", code="serial_invalid", field="serial")

            def run() -> Sku:
                sku = edits.add_sku(product, actor=actor(), code=code, kind=kind, bundle=parts, **values)
                if serial is not None:
                    vault.seal_serial(sku, serial)
                return sku

            outcome = perform("sku.create", f"sku-code:{code[:80]}", reason=form_reason(required=False), run=run,
                              after=lambda made: {"id": made.id, **edits.sku_snapshot(made)})
        except DomainError as exc:
            flash(message_of(exc), "error")
            return self._form(None, {k: v for k, v in f.items() if k != "serial"}, 409 if exc.status == 409 else 400)
        done(outcome, _("已创建 SKU"))
        if outcome.duplicate:
            return redirect(self.get_url(".index_view"))
        orders.forget_cached_skus()
        return redirect(self.get_url(".details_view", id=outcome.result.id))

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        sku = self._sku(request.args.get("id", ""))
        must("catalog.edit")
        if request.method == "GET":
            return self._form(sku, form_defaults(sku))
        try:
            values = sku_values(creating=False)
            changes = {k: v for k, v in values.items() if getattr(sku, k) != v}
            if not changes:
                flash(_("没有改动"), "info")
                return redirect(self.get_url(".details_view", id=sku.id))
            before = edits.sku_snapshot(sku)

            def run() -> dict[str, tuple]:
                diff = edits.update_sku(sku, changes, actor=actor())
                if "low_stock_threshold" in diff:  # re-arm or raise the low-stock flag at once
                    inventory.check_low_stock(sku.id, runtime().settings.LOW_STOCK_THRESHOLD)
                return diff

            outcome = perform("sku.update", f"sku:{sku.id}", reason=form_reason(), before=before, run=run,
                              after=lambda _diff: edits.sku_snapshot(sku))
        except DomainError as exc:
            flash(message_of(exc), "error")
            return self._form(sku, dict(request.form), 400)
        orders.forget_cached_skus()
        done(outcome, _("已保存"))
        warn_bundles(sku)
        return redirect(self.get_url(".details_view", id=sku.id))

    @expose("/details/")
    def details_view(self) -> Any:
        return self._details(self._sku(request.args.get("id", "")))

    def _details(self, sku: Sku, status: int = 200) -> Any:
        parts = catalog.components(sku) if sku.kind == Kind.BUNDLE else []
        history = list(events.Event.select().where(events.Event.subject == f"sku:{sku.id}")
                       .order_by(events.Event.id.desc()).limit(50))
        candidates = (list(Sku.select().where(Sku.kind.in_([k.value for k in edits.BUNDLE_PARTS]))
                           .order_by(Sku.code).limit(500)) if sku.kind == Kind.BUNDLE else [])
        counts = vault.key_counts(sku) if sku.kind == Kind.CARD_KEY else None
        return self.render("qx/catalog_sku.html", sku=sku, parts=parts, history=history, candidates=candidates,
                           available=inventory.available([sku])[sku.id], counts=counts, kinds=KIND_LABELS,
                           bundles=edits.bundles_containing(sku), yuan=yuan, percent=percent,
                           serial_set=bool(sku.serial_ciphertext), fmt_event=event_line), status

    def _act(self, sku: Sku, action: str, run: Any, success: str) -> Any:
        """A detail-page action: one service call through `perform`, with a reason."""
        must("catalog.edit")
        try:
            outcome = perform(action, f"sku:{sku.id}", reason=form_reason(), before=edits.sku_snapshot(sku),
                              run=run, after=lambda result: result if isinstance(result, dict) else
                              {"result": result})
        except DomainError as exc:
            flash(message_of(exc), "error")
            return self._details(self._sku(sku.id), 409 if exc.status == 409 else 400)
        orders.forget_cached_skus()
        done(outcome, success)
        return redirect(self.get_url(".details_view", id=sku.id))

    @expose("/<int:sku_id>/active", methods=("POST",))
    def set_active(self, sku_id: int) -> Any:
        sku = self._sku(sku_id)
        active = request.form.get("active") == "1"
        response = self._act(sku, "sku.activate" if active else "sku.deactivate",
                             lambda: {k: a for k, (_b, a) in edits.update_sku(sku, {"active": active},
                                                                                actor=actor()).items()},
                             _("已上架") if active else _("已停用"))
        warn_bundles(sku)
        return response

    @expose("/<int:sku_id>/restock", methods=("POST",))
    def restock(self, sku_id: int) -> Any:
        sku = self._sku(sku_id)

        def run() -> dict[str, int]:
            quantity = form_int("quantity", "quantity")
            stock = edits.restock(sku, quantity or 0, actor=actor())
            inventory.check_low_stock(sku.id, runtime().settings.LOW_STOCK_THRESHOLD)
            return {"added": quantity or 0, "stock": stock}

        return self._act(sku, "sku.restock", run, _("已补充库存"))

    @expose("/<int:sku_id>/bundle", methods=("POST",))
    def bundle(self, sku_id: int) -> Any:
        sku = self._sku(sku_id)
        code = (request.form.get("component") or "").strip()

        def run() -> dict[str, Any]:
            component = Sku.get_or_none(Sku.code == code)
            if component is None:
                raise CatalogInputError("unknown SKU", code="unknown_sku", field="bundle", sku=code[:64])
            if request.form.get("remove") == "1":
                return {"parts": edits.remove_bundle_part(sku, component, actor=actor())}
            quantity = form_int("quantity", "quantity")
            return {"parts": edits.set_bundle_part(sku, component, quantity or 0, actor=actor())}

        return self._act(sku, "sku.bundle", run, _("礼包组成已更新"))


def event_line(event: events.Event) -> Markup:
    """One row of a SKU's history: prices in yuan, other values as stored."""
    payload = event.payload or {}

    def show(values: Any) -> str:
        if not isinstance(values, dict):
            return str(values)
        return ", ".join(f"{_(FIELD_LABELS.get(k, k))}={yuan(v) if k.endswith('_fen') and isinstance(v, int) else v}"
                         for k, v in values.items())

    if "before" in payload or "after" in payload:
        return escape(show(payload.get("before"))) + Markup(" &rarr; ") + escape(show(payload.get("after")))
    return escape(show({k: v for k, v in payload.items() if k != "code"}))
