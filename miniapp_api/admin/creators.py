"""Admin pages: creators — search, profile, the team tree, and the owner's actions on a creator
(rebind, penalize, lift penalty, adjust level), each with a required reason, audited, through the
same services as `qianxing creators ...`.

Reading goes through models/team.py (sized by what is shown: keyset pages, the tree one level
at a time); balances are models.withdrawals.balances (the ledger's creator buckets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from miniapp_api.admin.actions import flash_duplicate, form_reason, perform
from miniapp_api.admin.base import QxView
from miniapp_api.admin.security import must, personal
from models import team
from models.errors import DomainError, InvalidInput
from models.level_adjustments import set_rank
from models.level_evaluation import lift_penalty, penalize
from models.levels import UNRANKED_NAME, table
from models.money import rmb
from models.network import Creator, rebind
from models.withdrawals import balances, list_withdrawals


def operator_actor() -> str:
    """The events' actor for the signed-in operator (the audit row names them)."""
    return f"operator:{must('creators.view').id}"


def _int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if number > 0 else None


def _snapshot(c: Creator) -> dict[str, Any]:
    return {"rank": c.rank, "rank_cap": c.rank_cap, "parent_id": c.parent_id, "grandparent_id": c.grandparent_id}


class CreatorsView(QxView):
    permission = "creators.view"

    @expose("/")
    def index(self) -> Any:
        query = (request.args.get("q") or "").strip()
        rows, more = team.search(query, before_id=_int(request.args.get("before")))
        names = {lv.rank: lv.name for lv in table()}
        return self.render("qx/creators.html", rows=rows, more=more, q=query, names=names,
                           unranked=UNRANKED_NAME, personal=personal)

    def _profile(self, c: Creator, status: int = 200) -> Any:
        levels = table()
        names = {lv.rank: lv.name for lv in levels}
        found = team.find(c.id)
        who = must("creators.view")
        page = self.render(
            "qx/creator.html", c=c, found=found, names=names, levels=levels, unranked=UNRANKED_NAME,
            upline=team.upline(c), figures=team.figures(c.id), balances=balances(c.id), history=team.history(c.id),
            sales=team.recent_sales(c.id), withdrawals=list_withdrawals(c, 20), rmb=rmb, personal=personal,
            can_manage=who.can("creators.manage"), gmv_days=team.GMV_DAYS)
        return page if status == 200 else (page, status)

    @expose("/<int:creator_id>")
    def profile(self, creator_id: int) -> Any:
        return self._profile(self._creator(creator_id))

    @expose("/<int:creator_id>/tree")
    def tree(self, creator_id: int) -> Any:
        c = self._creator(creator_id)
        level = team.children(c.id, after_id=_int(request.args.get("after")) or 0)
        names = {lv.rank: lv.name for lv in table()}
        return self.render("qx/creator_tree.html", c=c, root=team.node(c.id), level=level, names=names,
                           unranked=UNRANKED_NAME, rmb=rmb, gmv_days=team.GMV_DAYS, upline=team.upline(c),
                           creators_base=url_for(".index").rstrip("/"))

    @expose("/<int:creator_id>/children.json")
    def children(self, creator_id: int) -> Any:
        """One page of a node's children for the tree's "expand" and "more" buttons."""
        level = team.children(creator_id, after_id=_int(request.args.get("after")) or 0)
        names = {lv.rank: lv.name for lv in table()}
        out = level.as_dict()
        for node in out["nodes"]:
            node["rank_name"] = names.get(node["rank"], UNRANKED_NAME)
            node["gmv"] = rmb(node["gmv_fen"])
            node["url"] = url_for(".profile", creator_id=node["id"])
            node["tree_url"] = url_for(".tree", creator_id=node["id"])
        return jsonify(out)

    # ---- actions (owner only) ---------------------------------------------------------------

    def _creator(self, creator_id: int) -> Creator:
        found = Creator.get_or_none(Creator.id == creator_id)
        if found is None:
            abort(404)
        return found

    def _act(self, creator_id: int, action: str, run: Callable[[Creator, str, str], Creator]) -> Any:
        must("creators.manage")  # 403 before anything is read from the form
        c = self._creator(creator_id)
        try:
            reason = form_reason()
            outcome = perform(f"creator.{action}", f"creator:{c.id}", reason=reason, before=_snapshot(c),
                              run=lambda: run(c, operator_actor(), reason), after=_snapshot,
                              permission="creators.manage")
        except DomainError as exc:
            flash(exc.message, "error")
            return self._profile(Creator.get_by_id(c.id), status=exc.status if exc.status in (403, 409) else 400)
        if outcome.duplicate:
            flash_duplicate()
        else:
            flash(_("已完成"), "success")
        return redirect(url_for(".profile", creator_id=c.id))

    @expose("/<int:creator_id>/rebind", methods=["POST"])
    def rebind(self, creator_id: int) -> Any:
        detach = request.form.get("detach") == "1"
        code = (request.form.get("to") or "").strip()

        def run(c: Creator, actor: str, reason: str) -> Creator:
            if detach == bool(code):
                raise InvalidInput(_("请填写新的上级邀请码，或选择解除上级（二选一）"), code="rebind_target")
            return rebind(c, None if detach else code, actor=actor, reason=reason)

        return self._act(creator_id, "rebind", run)

    @expose("/<int:creator_id>/penalize", methods=["POST"])
    def penalize(self, creator_id: int) -> Any:
        rank = _rank(request.form.get("to_rank"))
        return self._act(creator_id, "penalize", lambda c, actor, reason: penalize(c, rank, actor=actor, reason=reason))

    @expose("/<int:creator_id>/lift-penalty", methods=["POST"])
    def lift(self, creator_id: int) -> Any:
        return self._act(creator_id, "lift_penalty", lambda c, actor, reason: lift_penalty(c, actor, reason))

    @expose("/<int:creator_id>/rank", methods=["POST"])
    def rank(self, creator_id: int) -> Any:
        rank = _rank(request.form.get("rank"))
        return self._act(creator_id, "set_rank", lambda c, actor, reason: set_rank(c, rank, actor, reason))


def _rank(value: str | None) -> int:
    """A rank from a form; -1 (refused by the services as invalid_rank) when it is not a number."""
    try:
        return int((value or "").strip())
    except ValueError:
        return -1


def register(admin: Admin) -> None:
    """Adds this area's views to the admin."""
    admin.add_view(CreatorsView(name=_l("达人"), endpoint="creators", url="creators"))
