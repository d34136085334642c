"""One error shape for the whole HTTP surface: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, has_request_context, jsonify, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from models.db import is_connection_lost
from models.errors import DomainError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


# Path prefixes whose errors are pages for people, not JSON (the admin registers /admin): each maps
# to a function (status, message) -> response.
HTML_ERRORS: dict[str, Callable[[int, str], Any]] = {}


def error_response(status: int, code: str, message: str):  # noqa: ANN201
    if HTML_ERRORS and has_request_context():
        for prefix, page in HTML_ERRORS.items():
            if request.path == prefix or request.path.startswith(prefix + "/"):
                return page(status, message)
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def validation_error(exc):  # noqa: ANN001, ANN201
    """flask-openapi3 hands pydantic's ValidationError here: answer 400 naming the field."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    if where == "request" and first.get("type") in ("model_type", "json_invalid"):
        return error_response(400, "invalid_request",
                              "the request body must be a JSON object (Content-Type: application/json)")
    return error_response(400, "invalid_request", f"{where}: {first.get('msg')}")


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):  # noqa: ANN202
        if exc.status >= 500:
            log.error("domain error %s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # noqa: ANN202
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        # keep what the exception says beyond its body: Allow on a 405, Retry-After on a 429/503
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # noqa: ANN202
        if is_connection_lost(exc):  # nothing to fix in the request: ask the client to retry
            log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            response = error_response(503, "database_unavailable",
                                      "the database is briefly unavailable; please try again")
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong; please try again")
