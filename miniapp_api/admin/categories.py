"""Admin page: the shelf's categories (models/shelf.py) — list them with their number of
products, add one, rename, reorder, hide or show one, and put a product into a category.

    GET  /admin/catalog/categories/              every category, hidden ones too, in shelf order
    POST /admin/catalog/categories/new           name, sort
    POST /admin/catalog/categories/<id>/edit     name, sort, active
    POST /admin/catalog/categories/assign        product id, category id (blank: none)

Seeing needs `catalog.view`, changing `catalog.edit`; every change is a one-time, audited action
(`actions.perform`). Nothing is deleted: a category is hidden (its products stay on the shelf,
listed without a category filter).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import current, must
from models import shelf
from models.errors import DomainError, InvalidInput

EDIT = "catalog.edit"
MESSAGES = {
    "invalid_category_name": _l("分类名称为 1-40 个字"),
    "invalid_sort": _l("排序应为 -1000000 到 1000000 之间的整数"),
    "category_name_taken": _l("已有同名分类"),
    "category_not_found": _l("分类不存在"),
    "product_not_found": _l("商品不存在"),
    "invalid_id": _l("商品 ID 和分类 ID 应为正整数"),
    "missing_action_token": _l("表单缺少一次性令牌，请刷新页面后重试"),
}


def _int(name: str, *, blank_ok: bool = False) -> int | None:
    raw = (request.form.get(name) or "").strip()
    if not raw and blank_ok:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name}: a whole number", code="invalid_sort" if name == "sort" else "invalid_id") from None


def _id(name: str, *, blank_ok: bool = False) -> int | None:
    value = _int(name, blank_ok=blank_ok)
    if value is not None and not 0 < value <= 2**62:
        raise InvalidInput(f"{name}: a positive id", code="invalid_id")
    return value


class CategoriesView(QxView):
    permission = "catalog.view"

    def _page(self, status: int = 200) -> Any:
        who = current()
        page = self.render("qx/categories.html", rows=shelf.all_categories(),
                           can_edit=who is not None and who.can(EDIT))
        return page if status == 200 else (page, status)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    def _run(self, action: str, obj: str, run: Any, success: str) -> Any:
        try:
            outcome = perform(action, obj, reason=form_reason(required=False), permission=EDIT, run=run,
                              after=lambda result: {"result": result})
        except DomainError as exc:
            if exc.status == 403:
                abort(403)
            flash(str(MESSAGES[exc.code]) if exc.code in MESSAGES else exc.message, "error")
            return self._page(exc.status if 400 <= exc.status < 500 else 400)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(success, "success")
        return redirect(url_for(".index"))

    @expose("/new", methods=["POST"])
    def create(self) -> Any:
        must(EDIT)
        f = request.form

        def run() -> dict[str, Any]:
            made = shelf.create_category(f.get("name") or "", _int("sort", blank_ok=True) or 0)
            return {"id": made.id, "name": made.name, "sort": made.sort}

        return self._run("category.create", "category:new", run, _("已添加分类"))

    @expose("/<int:category_id>/edit", methods=["POST"])
    def edit(self, category_id: int) -> Any:
        must(EDIT)
        f = request.form

        def run() -> dict[str, Any]:
            diff = shelf.update_category(category_id, name=f.get("name") or "", sort=_int("sort"),
                                         active=f.get("active") == "1")
            return {k: list(v) for k, v in diff.items()}

        return self._run("category.update", f"category:{category_id}", run, _("已保存"))

    @expose("/assign", methods=["POST"])
    def assign(self) -> Any:
        must(EDIT)

        def run() -> dict[str, Any]:
            product_id = _id("product_id")
            before, after = shelf.set_product_category(product_id, _id("category_id", blank_ok=True))
            return {"product": product_id, "before": before, "after": after}

        return self._run("product.category", f"product:{request.form.get('product_id', '')[:20]}", run,
                         _("已设置商品分类"))


def register(admin: Admin) -> None:
    admin.add_view(CategoriesView(name=_l("分类"), endpoint="categories", url="catalog/categories",
                                  category=_l("商品目录")))
