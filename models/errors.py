"""Domain errors with stable codes; transports map them to HTTP statuses or chat replies."""

from __future__ import annotations


class DomainError(Exception):
    """Base class. `code` is stable and documented; `status` is the HTTP status it maps to."""

    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(DomainError):
    code = "not_found"
    status = 404


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 400


class Conflict(DomainError):
    code = "conflict"
    status = 409


class OutOfStock(DomainError):
    code = "out_of_stock"
    status = 409


class TooManyUnpaidOrders(DomainError):
    code = "too_many_unpaid_orders"
    status = 429


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class PaymentRejected(DomainError):
    """A payment notification that must not be accepted (wrong amount, app or merchant)."""

    code = "payment_rejected"
    status = 400


class InvalidState(DomainError):
    code = "invalid_state"
    status = 409


class Unauthenticated(DomainError):
    code = "unauthorized"
    status = 401
