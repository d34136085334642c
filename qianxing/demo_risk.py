"""The demo's risk case (issue 15): two of 阿星's recruits buy through 阿星's link three times
from one phone, placed, paid, settled and scored through the real services, so the admin's
risk queue (/admin/risk/cases/) opens on one circular_buying case to look at (hold)."""

from __future__ import annotations

from models import checkout, network, payments, risk_scoring, risk_signals, settlement
from models.catalog import Sku
from models.orders import OrderRequest
from models.risk_tables import RiskCase
from models.users import User

DEMO_RISK_SELLER = "demo-creator-2"  # 阿星
DEMO_RISK_BUYERS = ("demo-creator-4", "demo-creator-5", "demo-creator-4")  # 木木, 阿杰, 木木
DEMO_RISK_SKU = "WPS-PRO-1Y"
DEMO_RISK_IP = "36.110.88.23"  # a public address (documentation ranges are not compared)
DEMO_RISK_DEVICE = "demo-shared-phone"


def _creator(openid: str) -> network.Creator | None:
    user = User.get_or_none(User.openid == openid)
    return network.Creator.get_or_none(network.Creator.user == user.id) if user else None


def demo_risk_case() -> RiskCase | None:
    """The demo seller's latest risk case, if any."""
    seller = _creator(DEMO_RISK_SELLER)
    if seller is None:
        return None
    return RiskCase.select().where(RiskCase.creator_id == seller.id).order_by(RiskCase.id.desc()).first()


def seed_risk() -> list[str]:
    """Place, pay, settle and score the demo's three orders, unless the demo seller has a risk
    case already (or the demo team or SKU is missing). Uses the bootstrapped runtime: its
    order policy, payout policy, score thresholds and RISK_HMAC_KEY."""
    from qianxing.wiring import runtime

    seller = _creator(DEMO_RISK_SELLER)
    if seller is None or demo_risk_case() is not None or not Sku.select().where(Sku.code == DEMO_RISK_SKU).exists():
        return []
    rt = runtime()
    key = rt.settings.RISK_HMAC_KEY or ""
    ids = []
    for n, openid in enumerate(DEMO_RISK_BUYERS):
        buyer = User.get(User.openid == openid)
        order, _ = checkout.place(buyer, OrderRequest(sku=DEMO_RISK_SKU, quantity=1, ref=seller.code), rt.policy,
                                  client_ip=DEMO_RISK_IP, idempotency_key=f"demo-risk-{n}")
        risk_signals.record(key, "order", user_id=buyer.id, ip=DEMO_RISK_IP, device=DEMO_RISK_DEVICE,
                            order_id=order.id, at=order.created_at)
        payments.confirm_payment(order.no, f"demo-risk-tx-{order.no}", order.amount_fen, source="sandbox")
        risk_signals.record_payment(key, order.id, openid)
        ids.append(order.id)
    settlement.settle(rt.payout, order_ids=ids)
    risk_scoring.score_pending(risk_scoring.Thresholds.from_settings(rt.settings), order_ids=ids)
    case = demo_risk_case()
    if case is None:
        return [f"risk demo: {len(ids)} orders placed, no case opened (check the rules at /admin/risk/rules/)"]
    return [f"risk case {case.id}: {seller.name}'s {len(ids)} orders from one phone ({case.outcome})"]


def risk_summary() -> list[str]:
    case = demo_risk_case()
    if case is None:
        return []
    return [f"risk case {case.id} ({case.state}, {case.outcome}) of 阿星: /admin/risk/cases/{case.id} "
            f"(queue: /admin/risk/cases/)"]
