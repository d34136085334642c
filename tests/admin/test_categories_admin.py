"""The shelf's categories in the admin (miniapp_api/admin/categories.py, issue 14): listed for
catalogue viewers, changed by catalogue editors over real HTTP, once per form, audited."""

from __future__ import annotations

from models.audit import AuditEntry
from models.catalog import Category, Product
from models.db import db
from tests.factories import category, shelf_product

PAGE = "/admin/catalog/categories/"


def categories() -> list[tuple[str, int, bool]]:
    with db.connection_context():
        return [(c.name, c.sort, c.active) for c in Category.select().order_by(Category.id)]


def test_an_editor_adds_edits_and_assigns(admin, rt):
    ops = admin("ops")
    # when ops adds a category, renames and hides it, then puts a product into it
    assert ops.post(f"{PAGE}new", {"name": "游戏", "sort": "2"}, page=PAGE).status_code == 302
    with db.connection_context():
        made = Category.get(Category.name == "游戏")
    assert ops.post(f"{PAGE}{made.id}/edit", {"name": "游戏点卡", "sort": "1"}, page=PAGE).status_code == 302
    sku = shelf_product("点券")
    answer = ops.post(f"{PAGE}assign", {"product_id": str(sku.product_id), "category_id": str(made.id)}, page=PAGE)
    # then each change is made and audited, and the page shows the category with its product
    assert answer.status_code == 302
    assert categories() == [("游戏点卡", 1, False)]
    with db.connection_context():
        assert Product.get_by_id(sku.product_id).category_id == made.id
        actions = [e.action for e in AuditEntry.select().where(AuditEntry.action.in_(
            ["category.create", "category.update", "product.category"])).order_by(AuditEntry.id)]
    assert actions == ["category.create", "category.update", "product.category"]
    page = ops.get(PAGE).data.decode()
    assert f'data-category="{made.id}" data-active="0"' in page and "游戏点卡" in page


def test_bad_forms_and_viewers_change_nothing(admin, rt):
    existing = category("会员")
    ops = admin("ops")
    for form, url in (({"name": "", "sort": "0"}, "new"), ({"name": "会员", "sort": "0"}, "new"),
                      ({"name": "x", "sort": "abc"}, "new"), ({"name": "x", "sort": "9999999999"}, "new"),
                      ({"name": "x", "sort": "1"}, f"{10**6}/edit"),
                      ({"product_id": "abc"}, "assign"), ({"product_id": str(10**6)}, "assign"),
                      ({"product_id": "1", "category_id": "-3"}, "assign")):
        assert ops.post(f"{PAGE}{url}", form, page=PAGE).status_code in (400, 404, 409), (url, form)
    assert categories() == [("会员", 0, True)]
    # a read-only operator sees the page without forms, and a POST is refused
    viewer = admin("readonly")
    page = viewer.get(PAGE).data.decode()
    assert f'data-category="{existing}"' in page and 'id="new-category"' not in page
    assert viewer.post(f"{PAGE}new", {"name": "新", "sort": "0"}, page=PAGE).status_code == 403
    assert categories() == [("会员", 0, True)]
