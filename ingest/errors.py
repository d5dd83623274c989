"""Errors of the receiving side (``ingest``).

The hierarchy::

    MailpulseError                       (mailpulse.errors)
     +-- IngestError
          +-- Rejected                   a request we refuse; carries its HTTP status
          |    +-- UnreadableBody        400
          |    +-- UnknownSource         404
          |    +-- MethodNotAllowed      405
          |    +-- PayloadTooLarge       413
          |    +-- UnsupportedMediaType  415
          |    +-- AuthenticationFailed  401
          |    +-- ForbiddenAddress      403
          |    +-- RateLimited           429
          +-- SpoolUnavailable           503: the request could not be stored durably
          +-- PayloadError               an authentic body that cannot be parsed (quarantined)
          +-- MappingError               an event that cannot be mapped to the schema (quarantined)
          +-- FlusherBusy                another flusher holds the lock
          +-- LakeError                  the lake or its state cannot be read or written
          +-- CannotServe                ``mailpulse serve`` cannot start (port taken, read-only)

Only the edges (``ingest.intake.http_errors`` and the CLI) turn these into status codes or lines.
"""

from __future__ import annotations

from mailpulse.errors import MailpulseError


class IngestError(MailpulseError):
    """Base class of the receiving side's errors."""


class Rejected(IngestError):
    """A request the receiver refuses. ``code`` is the stable machine word of the JSON body."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class UnreadableBody(Rejected):
    """The body could not be read as HTTP (a broken chunked encoding, a dropped client)."""

    status = 400
    code = "unreadable_body"


class UnknownSource(Rejected):
    """The URL names no configured source."""

    status = 404
    code = "unknown_source"


class MethodNotAllowed(Rejected):
    """Webhooks are POSTed; anything else is refused."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(Rejected):
    """The body is larger than ``max_body_bytes``."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(Rejected):
    """The content type is one the provider never sends."""

    status = 415
    code = "unsupported_media_type"


class AuthenticationFailed(Rejected):
    """Missing or wrong signature or credentials, stale timestamp or replayed token.

    ``code`` says which (``missing_signature``, ``bad_signature``, ``stale_timestamp``, ...);
    it is counted per source and never includes secret material.
    """

    status = 401
    code = "unauthenticated"


class ForbiddenAddress(Rejected):
    """The client address is not in the source's ``allow_ips``."""

    status = 403
    code = "forbidden_address"


class RateLimited(Rejected):
    """The source is over its ``rate_limit``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SpoolUnavailable(IngestError):
    """The request could not be made durable, so it must not be acknowledged."""

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class PayloadError(IngestError):
    """An authentic body that cannot be parsed at all (kept whole in quarantine)."""


class MappingError(IngestError):
    """One event that cannot be mapped to the event schema (kept in quarantine)."""


class FlusherBusy(IngestError):
    """Another flusher holds the lock on this data directory."""


class LakeError(IngestError):
    """The lake or the flusher state cannot be read or written."""


class CannotServe(IngestError):
    """The receiver cannot start: its port answers already, or its data directory is not
    writable. The message names the port or the directory."""
