"""Shopper self-service routes (issue 14): cancel an unpaid order, ask for a refund and see
its state, the shelf's categories. The product list and detail (search, categories, pages,
stock state) stay at GET /api/v1/products in miniapp_api/api.py, for old clients."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from miniapp_api.api import BEARER, ERRORS, _iso, _json_object_body, _order_out, shop_tag
from miniapp_api.auth import current_user
from miniapp_api.deps import runtime
from miniapp_api.schemas import OrderOut, OrderPath
from miniapp_api.shelf_schemas import CategoryList
from miniapp_api.shop.self_service_schemas import RefundRequestIn, RefundRequestOut
from models import live_orders, orders, refund_requests, shelf
from models.refund_requests import RefundRequest
from tasks.refund_requests import enqueue_refund

bp = APIBlueprint("shop_self_service", __name__, url_prefix="/api/v1")
bp.before_request(_json_object_body)
tag = Tag(name="self-service", description="the shopper's own orders: cancel, refund requests")


def _request_out(found: RefundRequest) -> dict:
    return RefundRequestOut(id=found.id, order_id=found.order_id, state=found.state, automatic=found.automatic,
                            reason=found.reason, note=found.decision_note, created_at=_iso(found.created_at),
                            decided_at=_iso(found.decided_at)).model_dump()


@bp.post("/orders/<int:order_id>/cancel", tags=[tag], security=BEARER, responses={200: OrderOut, **ERRORS})
def cancel(path: OrderPath):  # noqa: ANN201
    """Cancel my unpaid order: its stock, coupons and group-buy seat are given back at once.
    Cancelling it again answers the cancelled order. Errors: order_not_found (404, also someone
    else's), order_not_cancellable (409: paid, expired or refunded)."""
    order = orders.cancel_order(path.order_id, current_user())
    live_orders.reopen_gates(runtime().redis, [order.id])  # a live place given back: for sale at once
    return _order_out(order)


@bp.post("/orders/<int:order_id>/refund-request", tags=[tag], security=BEARER,
         responses={201: RefundRequestOut, **ERRORS})
def request_refund(path: OrderPath, body: RefundRequestIn):  # noqa: ANN201
    """Ask for my paid order's money back, with a reason. Under the refund policy an order whose
    keys were never revealed (or a failed top-up, or a group-buy order before its team formed) is
    refunded at once (`automatic`, state refunding, then refunded); anything else waits for an
    operator (pending). Errors: order_not_found (404), refund_already_requested (409, once per
    order), order_not_refundable (409: not paid), invalid_reason (400)."""
    found = refund_requests.request_refund(path.order_id, current_user().id, body.reason,
                                           runtime().settings.SELF_REFUND_AUTO)
    if found.state == refund_requests.RequestState.REFUNDING:
        enqueue_refund(found.id)
    return _request_out(found), 201


@bp.get("/orders/<int:order_id>/refund-request", tags=[tag], security=BEARER,
        responses={200: RefundRequestOut, 401: ERRORS[401], 404: ERRORS[404]})
def refund_request_state(path: OrderPath):  # noqa: ANN201
    """My refund request on this order and its state. 404: order_not_found,
    refund_request_not_found (none asked)."""
    return _request_out(refund_requests.of_order(path.order_id, current_user().id))


@bp.get("/categories", tags=[shop_tag], responses={200: CategoryList})
def categories():  # noqa: ANN201
    """The shelf's categories in display order (filter GET /products with `category`)."""
    return {"categories": [{"id": c.id, "name": c.name} for c in shelf.categories()]}
