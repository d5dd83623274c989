"""The HTTP edge: every refusal becomes ``{"error": code, "message": sentence}`` with its status.

Domain errors (:mod:`ingest.errors`) and werkzeug's own HTTP errors (a route that does not
exist, a body over the size limit) go through here; nothing reaches a client as HTML or as a
traceback.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ingest.errors import RateLimited, Rejected, SpoolUnavailable

log = logging.getLogger(__name__)

_WERKZEUG_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def error_response(status: int, code: str, message: str) -> Response:
    """The canonical JSON error body."""
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""

    @app.errorhandler(Rejected)
    def _rejected(error: Rejected) -> Response:
        response = error_response(error.status, error.code, error.message)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after)
        if error.status == 405:
            response.headers["Allow"] = "POST"
        return response

    @app.errorhandler(SpoolUnavailable)
    def _unavailable(error: SpoolUnavailable) -> Response:
        response = error_response(503, "spool_unavailable", error.message)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        code = _WERKZEUG_CODES.get(status, "http_error")
        response = error_response(status, code, error.description or error.name)
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # A bug must still not look like "stored": 503 makes the ESP retry later.
        log.exception("unexpected error while handling a request")
        response = error_response(503, "internal_error", "the receiver hit an unexpected error")
        response.headers["Retry-After"] = "30"
        return response
