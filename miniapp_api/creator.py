"""The creator routes of the mini-program API (/api/v1/creator/...): joining and binding, the
earnings center (balances, statement and its CSV, commissions, team, progress, funnel), prices,
withdrawals, short-video scripts (generate, list, subtitles as SRT, submit for review) and my
style; and /api/v1/track for the mini-program's activity events. Views parse, authenticate,
call one service, map errors. A user who has not joined gets 404 not_a_creator on every creator
route except /creator/join (/track needs only a login)."""

from __future__ import annotations

import dataclasses
import logging

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from redis import RedisError

from content_ai import scripts as content_scripts
from miniapp_api.api import BEARER, ERRORS, _iso, _json_object_body
from miniapp_api.auth import current_user
from miniapp_api.creator_schemas import (
    BalancesOut,
    BindIn,
    CommissionList,
    CreatorListQuery,
    CreatorProductList,
    FunnelOut,
    JoinIn,
    PriceIn,
    PriceOut,
    ProfileOut,
    ProgressOut,
    ScriptIn,
    ScriptList,
    ScriptListQuery,
    ScriptOut,
    ScriptPath,
    SkuPath,
    StatementOut,
    StyleIn,
    StyleOut,
    SubtitleQuery,
    TeamOut,
    TrackIn,
    TrackOut,
    WithdrawalList,
    WithdrawalListQuery,
    WithdrawalOut,
    WithdrawIn,
)
from miniapp_api.deps import runtime
from miniapp_api.errors import ErrorOut
from miniapp_api.risk_edge import request_edge
from miniapp_api.schemas import IdempotencyHeader
from models import activity, earnings, levels, live_dashboard, network, risk_withdrawal_checks, scripts, withdrawals
from models.db import utcnow
from models.network import Creator
from tasks import queues

log = logging.getLogger(__name__)
creator_api = APIBlueprint("creator", __name__, url_prefix="/api/v1")
creator_api.before_request(_json_object_body)
tag = Tag(name="creator", description="the creator plan: network, prices, earnings center, live")
READ_ERRORS = {401: ErrorOut, 404: ErrorOut}


def _me() -> Creator:
    """The logged-in user's creator profile; 401 without a session, 404 not_a_creator."""
    return network.creator_of(current_user().id)


def _profile_out(creator: Creator) -> dict:
    p = earnings.profile(creator)
    return ProfileOut(**{**dataclasses.asdict(p), "joined_at": _iso(p.joined_at)}).model_dump()


def _page(items: list, limit: int) -> int | None:
    return items[-1].id if len(items) == limit else None


@creator_api.post("/creator/join", tags=[tag], security=BEARER, responses={200: ProfileOut, **ERRORS})
def join(body: JoinIn):  # noqa: ANN201
    """Join the creator plan (idempotent); with an invite code, join the inviter's team. The
    first binding wins: errors self_binding, invite_cycle (400), unknown_invite_code (404),
    already_bound (409), and then nothing is written."""
    creator = earnings.join(current_user().id, name=body.name or "", invite_code=body.invite_code,
                            via=body.via)
    return _profile_out(creator)


@creator_api.post("/creator/bind", tags=[tag], security=BEARER, responses={200: ProfileOut, **ERRORS})
def bind(body: BindIn):  # noqa: ANN201
    """Join the team of an invite code's owner (once; only an operator can move you later)."""
    return _profile_out(network.bind(_me(), body.code, body.via))


@creator_api.get("/creator/me", tags=[tag], security=BEARER, responses={200: ProfileOut, **READ_ERRORS})
def me():  # noqa: ANN201
    """My creator profile: code, level, who invited me, what to share."""
    return _profile_out(_me())


@creator_api.get("/creator/balances", tags=[tag], security=BEARER,
                 responses={200: BalancesOut, **READ_ERRORS})
def balances():  # noqa: ANN201
    """My money by state, in fen."""
    return earnings.balances(_me())


@creator_api.get("/creator/statement", tags=[tag], security=BEARER,
                 responses={200: StatementOut, 400: ErrorOut, **READ_ERRORS})
def statement(query: CreatorListQuery):  # noqa: ANN201
    """My ledger entries, newest first (keyset paging: before_id = next_before_id)."""
    entries = earnings.statement(_me(), query.limit, query.before_id)
    return {"entries": [{**dataclasses.asdict(e), "created_at": _iso(e.created_at)} for e in entries],
            "next_before_id": _page(entries, query.limit)}


CSV_RESPONSE = {"description": "every entry as CSV (UTF-8 with BOM), amounts in yuan and fen",
                "content": {"text/csv": {"schema": {"type": "string"}}}}


@creator_api.get("/creator/statement.csv", tags=[tag], security=BEARER,
                 responses={200: CSV_RESPONSE, **READ_ERRORS})
def statement_csv():  # noqa: ANN201
    """My whole statement as a CSV download."""
    creator = _me()
    text = earnings.statement_csv(creator)
    # The BOM lets spreadsheet programs detect UTF-8 (memos and names may be Chinese).
    return Response(text.encode("utf-8-sig"), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="statement-{creator.code}.csv"'})


@creator_api.get("/creator/commissions", tags=[tag], security=BEARER,
                 responses={200: CommissionList, 400: ErrorOut, **READ_ERRORS})
def commissions(query: CreatorListQuery):  # noqa: ANN201
    """My commission lines with their orders and where each order's commission stands."""
    lines = earnings.commission_lines(_me(), query.limit, query.before_id)
    return {"lines": [{**dataclasses.asdict(c), "created_at": _iso(c.created_at)} for c in lines],
            "next_before_id": _page(lines, query.limit)}


@creator_api.get("/creator/team", tags=[tag], security=BEARER, responses={200: TeamOut, **READ_ERRORS})
def team():  # noqa: ANN201
    """My direct and second-level team with sizes and GMV (paid and delivered orders)."""
    return network.team(_me()).as_dict()


@creator_api.get("/creator/progress", tags=[tag], security=BEARER, responses={200: ProgressOut, **READ_ERRORS})
def progress():  # noqa: ANN201
    """My level, my invites, and what the next level needs."""
    settings = runtime().settings
    return levels.progress(_me(), entry_videos=settings.ENTRY_VIDEOS,
                           entry_invites=settings.ENTRY_INVITES).as_dict()


@creator_api.get("/creator/funnel", tags=[tag], security=BEARER, responses={200: FunnelOut, **READ_ERRORS})
def funnel():  # noqa: ANN201
    """My funnel: video plays -> live-room entries -> orders, with conversions."""
    return levels.funnel(_me()).as_dict()


@creator_api.get("/creator/products", tags=[tag], security=BEARER,
                 responses={200: CreatorProductList, **READ_ERRORS})
def products():  # noqa: ANN201
    """Every active SKU with my markup, selling price, commission rate and whether my level
    unlocks it."""
    found = earnings.products(_me(), default_cap_bp=runtime().settings.DEFAULT_MAX_MARKUP_BP)
    return {"products": [dataclasses.asdict(p) for p in found]}


@creator_api.put("/creator/prices/<sku_code>", tags=[tag], security=BEARER,
                 responses={200: PriceOut, **ERRORS})
def set_price(path: SkuPath, body: PriceIn):  # noqa: ANN201
    """Set my markup on a SKU (0 removes it); buyers through my ref pay retail + markup. Errors:
    markup_too_high, supply_locked (400), unknown_sku (404)."""
    markup = network.set_markup(_me(), path.sku_code, body.markup_fen,
                                default_cap_bp=runtime().settings.DEFAULT_MAX_MARKUP_BP)
    return {"sku": path.sku_code, "markup_fen": markup}


def _withdrawal_out(w: withdrawals.Withdrawal) -> dict:
    return WithdrawalOut(id=w.id, no=w.no, method=w.method, amount_fen=w.amount_fen, fee_fen=w.fee_fen,
                         net_fen=w.net_fen, state=w.state, requested_at=_iso(w.requested_at),
                         due_at=_iso(w.due_at), paid_at=_iso(w.paid_at)).model_dump()


@creator_api.post("/creator/withdrawals", tags=[tag], security=BEARER,
                  responses={201: WithdrawalOut, **ERRORS})
def request_withdrawal(body: WithdrawIn, header: IdempotencyHeader):  # noqa: ANN201
    """Withdraw from my available balance: to my WeChat wallet (fee, T+1, an operator approves
    large amounts) or as shopping credit (at once, no fee). The same Idempotency-Key and body
    returns the same withdrawal. Errors: below_minimum (400), in_debt, insufficient_balance,
    request_key_reused (409). A wallet withdrawal a risk rule flags (a first withdrawal, a spike,
    a payout account shared with another creator) is accepted in state `review`."""
    rt = runtime()
    ip, device = request_edge()
    w = risk_withdrawal_checks.request_withdrawal(rt.redis, rt.settings, _me(), body.amount_fen, body.method,
                                                  policy=rt.withdraw, request_key=header.idempotency_key,
                                                  ip=ip, device=device)
    return _withdrawal_out(w), 201


@creator_api.get("/creator/withdrawals", tags=[tag], security=BEARER,
                 responses={200: WithdrawalList, 400: ErrorOut, **READ_ERRORS})
def my_withdrawals(query: WithdrawalListQuery):  # noqa: ANN201
    """My withdrawals, newest first."""
    found = withdrawals.list_withdrawals(_me(), query.limit, query.before_id)
    return {"withdrawals": [_withdrawal_out(w) for w in found], "next_before_id": _page(found, query.limit)}


@creator_api.post("/track", tags=[tag], security=BEARER, responses={200: TrackOut, **ERRORS})
def track(body: TrackIn):  # noqa: ANN201
    """The mini-program's batched short-video plays and live-room entries (any logged-in
    viewer). Each event id is stored once: a resent batch reports its events as duplicates.
    Errors: too_many_events (over ACTIVITY_MAX_BATCH), invalid_occurred_at (400),
    unknown_creator (404); a bad batch writes nothing."""
    user = current_user()
    events = [activity.TrackEvent(event_id=e.id, creator_code=e.creator, kind=e.type, ref=e.ref,
                                  count=e.count, occurred_at=e.at) for e in body.events]
    result = activity.record_events(events, user_id=user.id, source="api",
                                    max_batch=runtime().settings.ACTIVITY_MAX_BATCH)
    _live_entries(events, user.id)
    return result.as_dict()


def _live_entries(events: list[activity.TrackEvent], viewer_id: int) -> None:
    """Live-room entries feed the live dashboard's counters (models/live_dashboard.py); the
    events are stored already, so Redis being away only loses the online figure for a moment."""
    entries = [(e.ref, e.occurred_at) for e in events if e.kind == activity.ActivityKind.LIVE_ENTRY]
    if not entries:
        return
    try:
        live_dashboard.entries_tracked(runtime().redis, entries, viewer_id, utcnow())
    except RedisError as exc:
        log.warning("live dashboard: entries not counted, Redis unavailable: %s", exc)



# ---- short-video scripts (issue 16; content_ai/scripts.py, models/scripts.py) ---------------------

SCRIPT_FIELDS = ("label", "title", "sku", "product", "price_fen", "topic", "style", "variants", "music", "cover")


def _script_out(row: scripts.ContentScript) -> dict:
    data = row.data or {}
    return ScriptOut(id=row.id, state=row.state, source=row.source, note=row.note, created_at=_iso(row.created_at),
                     submitted_at=_iso(row.submitted_at), reviewed_at=_iso(row.reviewed_at),
                     **{k: data.get(k) for k in SCRIPT_FIELDS}).model_dump()


@creator_api.post("/creator/scripts", tags=[tag], security=BEARER, responses={201: ScriptOut, **ERRORS})
def create_script(body: ScriptIn):  # noqa: ANN201
    """Write a short-video script for an active SKU: 15, 30 and 60 s variants (hook, pain point,
    selling points, proof, call to action, timed subtitles), music and cover tags, labeled 【广告】,
    prices only from the catalog (my price through my link). By the model when one is configured
    and its answer passes the guards, else offline. Kept as a draft. Errors: topic_too_long,
    invalid_style, script_blocked (400), unknown_sku (404)."""
    rt = runtime()
    row = content_scripts.create_script(_me(), body.sku, body.topic, body.style, ai=rt.ai, settings=rt.settings)
    return _script_out(row), 201


@creator_api.get("/creator/scripts", tags=[tag], security=BEARER,
                 responses={200: ScriptList, 400: ErrorOut, **READ_ERRORS})
def my_scripts(query: ScriptListQuery):  # noqa: ANN201
    """My scripts, newest first (keyset paging: before_id = next_before_id)."""
    found = scripts.list_for(_me(), limit=query.limit, before_id=query.before_id)
    return {"scripts": [_script_out(s) for s in found], "next_before_id": _page(found, query.limit)}


@creator_api.get("/creator/scripts/<int:script_id>", tags=[tag], security=BEARER,
                 responses={200: ScriptOut, **READ_ERRORS})
def my_script(path: ScriptPath):  # noqa: ANN201
    """One of my scripts (another creator's is script_not_found, 404)."""
    return _script_out(scripts.get(path.script_id, _me()))


SRT_RESPONSE = {"description": "the variant's subtitles as an SRT file (UTF-8)",
                "content": {"application/x-subrip": {"schema": {"type": "string"}}}}


@creator_api.get("/creator/scripts/<int:script_id>/subtitles.srt", tags=[tag], security=BEARER,
                 responses={200: SRT_RESPONSE, 400: ErrorOut, **READ_ERRORS})
def script_subtitles(path: ScriptPath, query: SubtitleQuery):  # noqa: ANN201
    """The subtitles of one variant (duration 15, 30 or 60) as an SRT download."""
    row = scripts.get(path.script_id, _me())
    body = content_scripts.srt_text(row.data, query.duration)
    return Response(body.encode("utf-8"), content_type="application/x-subrip; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="script-{row.id}-{query.duration}s.srt"'})


@creator_api.post("/creator/scripts/<int:script_id>/submit", tags=[tag], security=BEARER,
                  responses={200: ScriptOut, **ERRORS})
def submit_script(path: ScriptPath):  # noqa: ANN201
    """Submit a draft for publishing: the AI check (moderation, and WeChat's content check when
    configured) runs now; then it waits for an operator's review (state submitted), or is
    rejected at once when the check blocks it. I am told the review's outcome in chat. Errors:
    script_not_draft (409), script_not_found (404)."""
    rt = runtime()
    row = content_scripts.submit_script(_me(), path.script_id, settings=rt.settings, wechat=rt.wechat)
    if row.state == scripts.State.REJECTED:  # blocked by the AI check: the notice goes out now
        queues.drain_all_outbound()
    return _script_out(row)


@creator_api.put("/creator/style", tags=[tag], security=BEARER, responses={200: StyleOut, **ERRORS})
def set_style(body: StyleIn):  # noqa: ANN201
    """Set my script style (e.g. 亲切、专业、搞笑; at most 20 characters), used by every later
    script here and in chat. Errors: invalid_style (400)."""
    return {"style": scripts.set_style(_me(), body.style)}
