"""Base classes for every admin view, with Flask-Admin's peewee pitfalls fixed once:

- `get_one` ignores `get_query`: here it selects through `get_query()`, so row scoping holds on
  details and edit forms too (a row outside the operator's scope is a 404, like a missing one);
- `delete_model` deletes recursively (it would take an order's payments and ledger rows with a
  product): here it deletes the one row, and a row others refer to stays with a clear message;
- create and update are not atomic (the row is saved, then inline forms): here each runs in one
  transaction, and a failure leaves nothing half-written;
- the CSV export does not escape spreadsheet formulas: here every exported cell goes through
  `csv_cells.safe_cell`, and an export is an audit row;
- forms carry Flask-WTF's CSRF token (the one mechanism for every admin POST), and lists never
  count a whole table unless the view says the table is small.

`LargeUploads` is the one way an admin page takes a file larger than the API's request limit.
"""

from __future__ import annotations

import logging
from typing import Any

import peewee as pw
from flask import Blueprint, abort, flash, make_response, request
from flask_admin import Admin, BaseView
from flask_admin.contrib.peewee import ModelView
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from miniapp_api.admin import actions
from miniapp_api.admin.csv_cells import safe_cell
from miniapp_api.admin.security import Guarded
from miniapp_api.deps import runtime
from models.db import db

log = logging.getLogger(__name__)


UPLOAD_FORM_SLACK = 64 * 1024  # the multipart body around the file: boundaries, part headers, other fields


def upload_limit() -> int:
    """The largest file an operator may upload (ADMIN_UPLOAD_MAX_BYTES)."""
    return int(runtime().settings.ADMIN_UPLOAD_MAX_BYTES)


def size_text(limit: int) -> str:
    """A byte count as the pages show a limit: "5.0 MB", "512 KB"."""
    return f"{limit / 1024 / 1024:.1f} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


class LargeUploads:
    """Mixin (before QxView / QxModelView in the bases) for a view whose POST endpoints named in
    `upload_endpoints` take a file of up to ADMIN_UPLOAD_MAX_BYTES.

    The app's MAX_CONTENT_LENGTH is the API's small limit (16 KB), and the admin's CSRF check is
    an app-level `before_request` (init_admin) that reads the form, which parses the whole body
    under the limit in force: raised any later (in the view, or a `before_request` of the view's
    blueprint, which runs after the app's), the limit would already have refused the file. So it
    is raised (Flask 3.1's per-request `request.max_content_length`, to the upload limit plus
    UPLOAD_FORM_SLACK) in a `url_value_preprocessor` of the view's blueprint, which Flask runs
    before every `before_request`, for these endpoints only: every other admin POST keeps the
    small limit. A body whose Content-Length is over the raised limit is answered 413 with the
    limit in the message (`too_large_message`) before a byte of it is read; a file between the
    upload limit and the slack is for the view to refuse (it reads at most limit + 1 bytes)."""

    upload_endpoints: tuple[str, ...] = ()

    def too_large_message(self, limit: int) -> str:
        return _("文件超过大小上限 %(limit)s", limit=size_text(limit))

    def create_blueprint(self, admin: Admin) -> Blueprint:
        blueprint = super().create_blueprint(admin)  # type: ignore[misc]
        names = set(self.upload_endpoints)

        def raise_limit(endpoint: str | None, values: dict[str, Any] | None) -> None:
            if request.method == "POST" and endpoint and endpoint.rpartition(".")[2] in names:
                limit = upload_limit()
                request.max_content_length = limit + UPLOAD_FORM_SLACK
                if request.content_length is not None and request.content_length > request.max_content_length:
                    from miniapp_api.admin import error_page

                    body, status = error_page(413, self.too_large_message(limit))
                    abort(make_response(body, status))  # refused before a byte of the body is read

        blueprint.url_value_preprocessor(raise_limit)
        return blueprint


class QxView(Guarded, BaseView):
    """A custom admin page (`@expose` methods, templates extending `admin/master.html`)."""


class QxModelView(Guarded, ModelView):
    form_base_class = FlaskForm
    page_size = 50
    can_set_page_size = False
    simple_list_pager = True  # no COUNT(*) per page view; small tables may turn it off
    can_view_details = True
    audit_name: str = ""  # the audit object prefix, e.g. "sku"

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        """A create, edit, delete, bulk action or export the role may not do is a 403 (Flask-Admin
        itself redirects to the list, which hides the refusal from scripts and tests)."""
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        may = {"create_view": self.can_create, "edit_view": self.can_edit,
               "ajax_update": self.can_edit and bool(self.column_editable_list),
               "delete_view": self.can_delete, "export": self.can_export}.get(name)
        if may is False and (name != "edit_view" or request.method != "GET"):
            abort(403)
        if name == "action_view" and request.method == "POST":
            wanted = request.form.get("action", "")
            if not any(action == wanted for action, _ in self.get_actions_list()[0]):
                abort(403)
        return None

    def get_one(self, id: Any) -> Any:  # noqa: A002
        try:
            pk = self.model._meta.primary_key
            return self.get_query().where(pk == pk.db_value(id)).get()
        except (self.model.DoesNotExist, ValueError, TypeError):
            return None

    def _audit_object(self, model: Any) -> str:
        return f"{self.audit_name or self.model._meta.table_name}:{model.get_id()}"

    def _snapshot(self, model: Any) -> dict[str, Any]:
        return {name: getattr(model, f.name + ("_id" if isinstance(f, pw.ForeignKeyField) else ""))
                for name, f in self.model._meta.fields.items()}

    def create_model(self, form: Any) -> Any:
        try:
            with db.atomic():
                model = self.model()
                form.populate_obj(model)
                self._on_model_change(form, model, True)
                model.save(force_insert=True)
                with db.atomic():
                    actions.record(f"{self.audit_name or self.model._meta.table_name}.create",
                                   self._audit_object(model), after=self._snapshot(model))
        except Exception as exc:
            if not self.handle_view_exception(exc):
                flash(_("保存失败：%(error)s", error=_message(exc)), "error")
                log.warning("admin create %s failed: %s", self.model.__name__, exc)
            return False
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form: Any, model: Any) -> bool:
        try:
            with db.atomic():
                before = self._snapshot(model)
                form.populate_obj(model)
                self._on_model_change(form, model, False)
                model.save()
                actions.record(f"{self.audit_name or self.model._meta.table_name}.update",
                               self._audit_object(model), before=before, after=self._snapshot(model))
        except Exception as exc:
            if not self.handle_view_exception(exc):
                flash(_("保存失败：%(error)s", error=_message(exc)), "error")
                log.warning("admin update %s failed: %s", self.model.__name__, exc)
            return False
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model: Any) -> bool:
        try:
            with db.atomic():
                before = self._snapshot(model)
                self.on_model_delete(model)
                model.delete_instance(recursive=False)
                actions.record(f"{self.audit_name or self.model._meta.table_name}.delete",
                               self._audit_object(model), before=before)
        except pw.IntegrityError:
            flash(_("无法删除：还有其他记录引用它，请改为停用"), "error")
            return False
        except Exception as exc:
            if not self.handle_view_exception(exc):
                flash(_("删除失败：%(error)s", error=_message(exc)), "error")
            return False
        self.after_model_delete(model)
        return True

    def get_export_value(self, model: Any, name: Any) -> Any:
        return safe_cell(super().get_export_value(model, name))

    def _export_csv(self, return_url: Any) -> Any:
        with db.atomic():
            actions.record(f"{self.audit_name or self.model._meta.table_name}.export", self.model._meta.table_name)
        return super()._export_csv(return_url)


def _message(exc: Exception) -> str:
    from models.errors import DomainError

    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, pw.IntegrityError):
        return _("与已有记录冲突（编码重复或被引用）")
    return type(exc).__name__
