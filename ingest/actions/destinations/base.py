"""What every destination of an action is: one small interface, one module per kind.

A destination turns one :class:`Delivery` (a normalized event, for one action, at one attempt)
into one request and reports the :class:`Answer`. It never retries and never raises for a
failed delivery: the dispatcher (:mod:`ingest.actions.dispatcher`) decides from the answer
whether to retry, when, or to dead-letter the action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: How much of an answer's body is kept with the action (``mailpulse actions list``).
DETAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """One action to perform."""

    id: int  # the outbox row
    action: str  # the [actions.<name>] it belongs to
    webhook_id: str  # stable per event and action: every attempt carries the same one
    event: Mapping[str, Any]  # the normalized event, JSON-ready (ISO 8601 times), no raw payload
    attempt: int  # 1 for the first


@dataclass(frozen=True, slots=True)
class Answer:
    """What the destination said, or why it said nothing."""

    status: int | None  # the HTTP status; None when no answer came (timeout, refused, DNS)
    detail: str  # the start of the body, or a sentence saying what failed; never a secret
    retry_after: float | None = None  # seconds, from the answer's Retry-After

    @property
    def ok(self) -> bool:
        """The destination took the action (any 2xx)."""
        return self.status is not None and 200 <= self.status < 300


class Destination(Protocol):
    """Sends deliveries of one action; safe to call from several threads at once."""

    def send(self, delivery: Delivery) -> Answer:
        """Perform ``delivery`` once and report the answer; never raises for a failure."""

    def close(self) -> None:
        """Release connections."""
