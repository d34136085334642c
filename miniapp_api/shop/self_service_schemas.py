"""Request and response models of the shopper self-service routes (miniapp_api/shop/self_service.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from miniapp_api.schemas import _strict

# Some text that is not only whitespace, without control characters (tabs and line breaks are
# whitespace): models/refund_requests.py `clean_reason`.
_TEXT = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
REASON = rf"^{_TEXT}*[^\s\x00-\x1f\x7f-\x9f]{_TEXT}*$"


class RefundRequestIn(BaseModel):
    model_config = _strict
    reason: str = Field(min_length=1, max_length=200, pattern=REASON, description="why, for the operator")


class RefundRequestOut(BaseModel):
    id: int
    order_id: int
    state: Literal["pending", "refunding", "refunded", "rejected"]
    automatic: bool = Field(description="granted by the refund policy, without an operator")
    reason: str
    note: str | None = Field(description="the operator's note on a decision")
    created_at: str
    decided_at: str | None
