"""``POST /webhooks/<source>``: authenticate, make durable, answer. Nothing more.

The order of checks is the order of cost: the cheap refusals (unknown source, wrong method,
address, rate, size, media type) come before reading the body, and authentication comes
before anything is written. Parsing happens later, in the flusher.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from typing import Any

from flask import Blueprint, Request, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ingest.errors import (
    AuthenticationFailed,
    ForbiddenAddress,
    IngestError,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Rejected,
    SpoolUnavailable,
    UnknownSource,
    UnreadableBody,
    UnsupportedMediaType,
)
from ingest.intake.runtime import ReceiverState, SourceRuntime
from ingest.metrics import REQUEST_SECONDS, REQUESTS, SIGNATURE_FAILURES
from ingest.providers.base import InboundRequest
from ingest.spool import SpoolRecord, new_request_id

log = logging.getLogger(__name__)
bp = Blueprint("receiver", __name__)

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: The header a shadow-mode source's spooled requests carry: ``verified``, or the reason
#: authentication failed. One sent by a client is dropped, so it cannot vouch for itself.
VERDICT_HEADER = "x-mailpulse-verdict"


def state() -> ReceiverState:
    """The receiver's per-app state (config, providers, spool, clock)."""
    value: ReceiverState = current_app.extensions["mailpulse"]
    return value


@bp.route("/webhooks/<source>", methods=_ALL_METHODS, provide_automatic_options=False)
def receive(source: str) -> Response:
    """Store one webhook request durably and acknowledge it."""
    started = time.perf_counter()
    receiver = state()
    runtime = receiver.sources.get(source)
    label = source if runtime is not None else "_unknown"
    try:
        if runtime is None:
            raise UnknownSource(f"no source named {source[:64]!r} is configured")
        return _receive(receiver, runtime, started)
    except IngestError as error:
        _refused(label, error, request.remote_addr)
        raise


def _refused(source: str, error: IngestError, client_ip: str | None) -> None:
    """Count and log one refused request."""
    outcome = error.code if isinstance(error, Rejected) else "spool_unavailable"
    REQUESTS.labels(source, outcome).inc()
    if isinstance(error, AuthenticationFailed):
        _authentication_failed(source, error, shadow=False)
    elif not isinstance(error, UnknownSource):
        log.warning(
            "webhook refused",
            extra={"source": source, "outcome": outcome, "client_ip": client_ip},
        )


@functools.cache
def _success_metrics(source: str) -> tuple[Any, Any]:
    """The labelled children a stored request updates, looked up once per source (hot path)."""
    return REQUESTS.labels(source, "stored"), REQUEST_SECONDS.labels(source)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers, lower-cased, straight from the WSGI environ.

    The same pairs as ``request.headers`` gives, without building its title-cased names
    first (this runs for every webhook).
    """
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key[:5] == "HTTP_" and key not in _BODY_HEADERS_AS_HTTP
    }
    for key, name in _BODY_HEADERS.items():
        value = environ.get(key)
        if value:
            headers[name] = value
    return headers


_BODY_HEADERS = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}
_BODY_HEADERS_AS_HTTP = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


def _receive(receiver: ReceiverState, runtime: SourceRuntime, started: float) -> Response:
    """Check, read, authenticate, store, answer: the steps of one webhook, in order of cost."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]  # hot path
    if req.method != "POST":
        if req.method in runtime.provider.probe_methods:  # the ESP checking the URL exists
            return Response(b'{"status":"ok"}', mimetype="application/json")
        raise MethodNotAllowed(f"webhooks are POSTed; {req.method} is not accepted")
    client_ip = req.remote_addr or ""
    _check_client(receiver, runtime, client_ip)
    limit = runtime.config.max_body_bytes or receiver.config.receiver.max_body_bytes
    length = req.content_length  # parsed from the headers at each access: read once
    media_type = _check_envelope(req, runtime, length, limit)
    body = _read_body(req, length, limit)
    inbound = _inbound(req, runtime, body, client_ip, media_type)
    now = receiver.clock()
    verdict = _authenticate(runtime, inbound, now)
    record = _record(runtime, inbound, verdict, now)
    receiver.spool.append(record)
    if verdict == "verified":
        runtime.provider.accepted(inbound)  # e.g. a token is spent only once it is durable
    count, seconds = _success_metrics(runtime.config.name)
    count.inc()
    seconds.observe(time.perf_counter() - started)
    return Response(
        b'{"status":"stored","request_id":"' + record.request_id.encode() + b'"}',
        mimetype="application/json",
    )


def _check_client(receiver: ReceiverState, runtime: SourceRuntime, client_ip: str) -> None:
    """Refuse a client address the source does not allow, or one over the source's rate."""
    if runtime.config.allow_ips and not _allowed(client_ip, runtime):
        raise ForbiddenAddress(f"client address {client_ip} is not allowed for this source")
    if runtime.rate_limit is not None and not receiver.limiter.hit(
        runtime.rate_limit, runtime.config.name
    ):
        raise RateLimited(
            f"source {runtime.config.name!r} is over its rate limit",
            retry_after=runtime.retry_after,
        )


def _check_envelope(req: Request, runtime: SourceRuntime, length: int | None, limit: int) -> str:
    """Refuse an announced ``length`` over ``limit`` or a media type the provider does not
    send; the media type, lower-cased."""
    if length is not None and length > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    media_type = (req.mimetype or "").lower()
    if media_type not in runtime.provider.content_types:
        expected = ", ".join(sorted(runtime.provider.content_types))
        raise UnsupportedMediaType(f"content type {media_type or '(none)'!r} is not {expected}")
    return media_type


def _read_body(req: Request, length: int | None, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; one shorter than the announced ``length`` or
    broken is refused."""
    # A chunked body has no length up front: read at most one byte past the limit, so an
    # oversized body is refused without ever being held whole in memory.
    req.max_content_length = limit + 1
    try:
        body = req.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:
        # The server's own error for a body it could not read, whatever its type.
        raise UnreadableBody(f"the request body could not be read ({type(exc).__name__})") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    if length is not None and len(body) != length:
        # The client went away mid-body: what arrived is not the request it announced.
        raise UnreadableBody(f"the body ended after {len(body)} of {length} announced bytes")
    return body


def _inbound(
    req: Request, runtime: SourceRuntime, body: bytes, client_ip: str, media_type: str
) -> InboundRequest:
    """The request as a provider sees it: path and query as received, lower-cased headers."""
    environ = req.environ
    # Path and query as received; cheaper than req.url, which re-quotes the whole URL.
    target = environ.get("PATH_INFO", "")
    if environ.get("QUERY_STRING"):
        target += "?" + environ["QUERY_STRING"]
    return InboundRequest(
        source=runtime.config.name,
        method=req.method,
        url=target,
        headers=_headers(environ),
        body=body,
        remote_addr=client_ip,
        content_type=media_type,
    )


def _authenticate(runtime: SourceRuntime, inbound: InboundRequest, now: float) -> str:
    """``verified``, or (in shadow mode only) the reason authentication failed."""
    try:
        runtime.provider.authenticate(inbound, now)
    except AuthenticationFailed as failure:
        if not runtime.config.shadow:
            raise
        _authentication_failed(runtime.config.name, failure, shadow=True)
        return failure.code
    return "verified"


def _record(
    runtime: SourceRuntime, inbound: InboundRequest, verdict: str, now: float
) -> SpoolRecord:
    """What the spool keeps: the request without its credential headers, and the verdict
    for a shadow-mode source."""
    credential_headers = runtime.provider.secret_headers
    stored_headers = {
        k: v
        for k, v in inbound.headers.items()
        if k not in credential_headers and k != VERDICT_HEADER
    }
    if runtime.config.shadow:
        stored_headers[VERDICT_HEADER] = verdict
    return SpoolRecord(
        request_id=new_request_id(),
        source=runtime.config.name,
        received_at=int(now * 1_000_000),
        remote_addr=inbound.remote_addr,
        method=inbound.method,
        url=inbound.url,
        content_type=inbound.content_type,
        headers=stored_headers,
        body=inbound.body,
    )


def _authentication_failed(source: str, failure: AuthenticationFailed, *, shadow: bool) -> None:
    """Count and log one failed authentication: its reason, source and client address."""
    SIGNATURE_FAILURES.labels(source, failure.code).inc()
    log.warning(
        "authentication failed; accepted (shadow mode)" if shadow else "authentication failed",
        extra={
            "source": source,
            "reason": failure.code,
            # The error's sentence names what was wrong, never a secret or a signature.
            "detail": failure.message,
            "client_ip": request.remote_addr,
            "shadow": shadow,
        },
    )


def _allowed(client_ip: str, runtime: SourceRuntime) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in runtime.config.allow_ips)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: 200 only while the spool accepts durable writes."""
    problem = state().spool.check_writable()
    if problem is not None:
        raise SpoolUnavailable(problem, retry_after=state().config.receiver.retry_after_seconds)
    return jsonify(status="ready")
