"""The ESP's side of a webhook, for ``mailpulse simulate`` and the demo.

The receiver (:mod:`ingest.providers`) only reads requests; an ESP module here writes them:

1. ``encode``: simulated events (in mailpulse's vocabulary) become one request exactly as the
   ESP would send it, batched as the ESP batches (at most the provider's ``max_batch``
   events) and authenticated with the sender's keys.
2. ``demo_credentials``: a fresh pair of receiver settings and sender keys for a demo source.
3. ``message_id``: a message id in the ESP's own format.

Which event types an ESP reports and how many events it batches are facts the receiver
declares (``Provider.emits``, ``Provider.max_batch``); the simulator reads them from there, so
both sides use one list.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from ingest.providers.base import Provider
from ingest.providers.shared_secret import (
    BASIC_AUTH,
    HEADER_TOKEN,
    TOKEN_HEADER_OPTION,
    basic_header,
)


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One event the simulator makes happen, in mailpulse's vocabulary: its ground truth.

    ``sequence`` is unique within a run; ESP-side ids derive from it (and the run's seed), so
    a retry of the same event carries the same ids. ``agent`` is set only when the ESP itself
    would flag the event (an Apple proxy open SendGrid marks ``sg_machine_open``, a Mailgun
    ``client-info.bot``); heuristics are the flusher's business.
    """

    sequence: int
    event_type: str
    recipient: str
    occurred_at: float  # unix seconds
    message_id: str
    campaign: str | None = None
    tags: tuple[str, ...] = ()
    url: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    agent: str | None = None
    bounce_class: str | None = None
    smtp_status: str | None = None
    reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One request as the ESP sends it: what ``encode`` returns and the simulator POSTs."""

    headers: Mapping[str, str]
    body: bytes
    method: str = "POST"


def shared(keys: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Demo credentials of a shared-secret scheme: both sides hold the same ``keys``."""
    return dict(keys), dict(keys)


class Batch(NamedTuple):
    """What one request carries and how it is sent: the arguments of ``Esp.encode``."""

    events: Sequence[SimulatedEvent]
    url: str
    now: float
    sender: Mapping[str, str]


class Esp(ABC):
    """One ESP's sending side; ``provider`` is the receiving side it writes for."""

    provider: ClassVar[type[Provider]]

    @property
    def name(self) -> str:
        """The provider name (``[sources.x] provider = ...``)."""
        return self.provider.name

    @property
    def emits(self) -> frozenset[str]:
        """The event types the ESP reports, as the receiver declares them."""
        return self.provider.emits

    @property
    def max_batch(self) -> int:
        """The most events the ESP puts in one request."""
        return self.provider.max_batch

    def message_id(self, sequence: int, seed: int) -> str:
        """A message id in the ESP's own format (deterministic)."""
        return f"<{seed}.{sequence}@sim.mailpulse.dev>"

    def encode(
        self,
        events: Sequence[SimulatedEvent],
        *,
        url: str,
        now: float,
        sender: Mapping[str, str],
    ) -> OutboundRequest:
        """One request carrying ``events`` as the ESP sends it, authenticated with ``sender``.

        ``url`` is the full URL the request goes to (Mandrill signs it); ``now`` is the send
        time in unix seconds; ``sender`` holds the sender-side keys (``demo_credentials``'s
        second half, or the source's own symmetric credentials).
        """
        return self.write(Batch(tuple(events), url, now, sender))

    @abstractmethod
    def write(self, batch: Batch) -> OutboundRequest:
        """The request of one batch (what ``encode`` returns)."""

    @classmethod
    @abstractmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Fresh credentials for a demo source at ``url``.

        Returns the ``[sources.<name>]`` keys the receiver needs (besides ``provider``) and the
        sender-side keys ``encode`` signs with (for symmetric schemes, the same secrets).
        """

    def sender_headers(self, sender: Mapping[str, str]) -> dict[str, str]:
        """The credential headers a shared-secret ESP sends: Basic credentials and/or a token."""
        headers = {}
        if sender.get(BASIC_AUTH):
            headers["Authorization"] = basic_header(sender[BASIC_AUTH])
        if sender.get(HEADER_TOKEN):
            default = getattr(self.provider, "token_header", "authorization")
            header = sender.get(TOKEN_HEADER_OPTION) or default
            token = sender[HEADER_TOKEN]
            if header.lower() == "authorization":
                headers["Authorization"] = f"Bearer {token}"
            else:
                headers[header] = token
        return headers
