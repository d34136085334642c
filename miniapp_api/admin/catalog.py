"""Catalog pages: products (list with search and filter, create and edit forms) here, SKUs in
miniapp_api/admin/catalog_skus.py, what their forms share in catalog_forms.py; `register` adds
both.

Lists are Flask-Admin model views; every create and edit form is our own and runs ONE service of
models/catalog_edits.py through `perform` (once per form, audited, in one transaction with the
service's events): `add_product`, `update_product`, `add_sku`, `update_sku`, `set_bundle_part`,
`remove_bundle_part`, `restock`. Prices are typed in yuan and stored in fen exactly
(`catalog_edits.yuan_to_fen`, Decimal); rates and caps in percent (`catalog_edits.percent_to_bp`).
Nothing is deleted: a product or SKU is deactivated. After a change that takes SKUs on or off
sale this process's order-path cache is dropped (`orders.forget_cached_skus`).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_admin.contrib.peewee.filters import BooleanEqualFilter
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from miniapp_api.admin.actions import form_reason, perform
from miniapp_api.admin.base import QxModelView
from miniapp_api.admin.catalog_forms import KIND_LABELS, actor, done, message_of
from miniapp_api.admin.catalog_skus import SkuView
from miniapp_api.admin.security import must
from models import catalog_edits as edits
from models import orders
from models.catalog import Product, Sku
from models.errors import DomainError


class ProductView(QxModelView):
    """Products: list, create, edit (title, description, active). No delete."""

    permission = "catalog.view"
    create_permission = edit_permission = "catalog.edit"
    audit_name = "product"
    can_view_details = False
    column_list = ("id", "title", "active", "created_at")
    column_labels = {"id": "ID", "title": _l("标题"), "active": _l("在售"), "created_at": _l("创建时间")}
    column_searchable_list = ("title",)
    column_formatters = {"title": lambda v, c, m, n: Markup('<a href="{}">{}</a>').format(
        url_for(".edit_view", id=m.id), m.title)}
    column_filters = (BooleanEqualFilter(Product.active, _l("在售")),)
    column_default_sort = ("id", True)
    form_columns = ("title",)

    def _form(self, product: Product | None, values: dict[str, str], status: int = 200) -> Any:
        skus = list(Sku.select().where(Sku.product == product).order_by(Sku.id)) if product else []
        return self.render("qx/catalog_product_form.html", product=product, values=values, skus=skus,
                           kinds=KIND_LABELS), status

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        must("catalog.edit")
        if request.method == "GET":
            return self._form(None, {"active": "1"})
        f = request.form
        try:
            outcome = perform("product.create", "product:new", reason=form_reason(required=False),
                              run=lambda: edits.add_product(f.get("title") or "", f.get("description") or "",
                                                            actor=actor(), active=f.get("active") == "1"),
                              after=lambda p: {"id": p.id, "title": p.title, "active": p.active})
        except DomainError as exc:
            flash(message_of(exc), "error")
            return self._form(None, dict(f), 409 if exc.status == 409 else 400)
        done(outcome, _("已创建商品"))
        if outcome.duplicate:
            return redirect(self.get_url(".index_view"))
        return redirect(self.get_url(".edit_view", id=outcome.result.id))

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self) -> Any:
        product = self.get_one(request.args.get("id", ""))
        if product is None:
            abort(404)
        if request.method == "GET":
            return self._form(product, {"title": product.title, "description": product.description,
                                        "active": "1" if product.active else ""})
        must("catalog.edit")
        f = request.form
        changes = {"title": f.get("title") or "", "description": f.get("description") or "",
                   "active": f.get("active") == "1"}
        before = {"title": product.title, "description": product.description, "active": product.active}
        try:
            outcome = perform("product.update", f"product:{product.id}", reason=form_reason(), before=before,
                              run=lambda: edits.update_product(product, changes, actor=actor()),
                              after=lambda diff: {k: a for k, (_b, a) in diff.items()})
        except DomainError as exc:
            flash(message_of(exc), "error")
            return self._form(product, dict(f), 400)
        if not outcome.duplicate and "active" in (outcome.result or {}):
            orders.forget_cached_skus()
        done(outcome, _("已保存"))
        return redirect(self.get_url(".edit_view", id=product.id))


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(ProductView(Product, name=_l("商品"), endpoint="products", url="catalog/products",
                               category=_l("商品目录")))
    admin.add_view(SkuView(Sku, name=_l("SKU"), endpoint="skus", url="catalog/skus", category=_l("商品目录")))
