"""SparkPost's side of a webhook, for ``mailpulse simulate``: batches as SparkPost posts them.

Ids derive from the event's sequence and message id, so a retry carries the same ``event_id``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import orjson

from ingest.providers import shared_secret
from ingest.providers.sparkpost import BATCH_HEADER, SparkPostProvider
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

#: mailpulse event type -> (SparkPost class, type).
SPARKPOST_TYPES = {
    "sent": ("message_event", "injection"),
    "delivered": ("message_event", "delivery"),
    "deferred": ("message_event", "delay"),
    "bounced": ("message_event", "bounce"),
    "dropped": ("message_event", "policy_rejection"),
    "complained": ("message_event", "spam_complaint"),
    "opened": ("track_event", "open"),
    "clicked": ("track_event", "click"),
    "unsubscribed": ("unsubscribe_event", "link_unsubscribe"),
}
_BOUNCE_CODES = {"hard": "10", "soft": "20", "undetermined": "1"}
_DROP_REASONS = {
    "bounced": "550 5.7.1 recipient address suppressed due to a previous bounce",
    "unsubscribed": "550 5.7.1 recipient address suppressed: unsubscribed",
    "complained": "550 5.7.1 recipient address suppressed: spam complaint",
    "suppressed": "550 5.7.1 recipient address suppressed due to customer policy",
    "invalid": "550 5.1.3 invalid recipient address",
    "policy": "554 5.7.1 message rejected by sending policy",
}


def event_id(event: SimulatedEvent) -> str:
    """A deterministic SparkPost-style event id: a large integer, as text."""
    digest = hashlib.sha256(f"event:{event.sequence}:{event.message_id}".encode()).digest()
    return str(int.from_bytes(digest[:7], "big"))


def _transmission_id(message_id: str) -> str:
    """One transmission per simulated message: a large integer derived from its id."""
    digest = hashlib.sha256(f"transmission:{message_id}".encode()).digest()
    return str(int.from_bytes(digest[:7], "big"))


def sparkpost_event(event: SimulatedEvent) -> dict[str, Any]:
    """One SimulatedEvent as the batch element SparkPost posts for it."""
    event_class, kind = SPARKPOST_TYPES[event.event_type]
    if event.event_type == "dropped" and event.bounce_class == "generation":
        event_class, kind = "gen_event", "generation_failure"
    body: dict[str, Any] = {
        "type": kind,
        "event_id": event_id(event),
        "timestamp": str(int(event.occurred_at)),
        "message_id": event.message_id,
        "transmission_id": _transmission_id(event.message_id),
        "rcpt_to": event.recipient,
        "raw_rcpt_to": event.recipient,
        "rcpt_tags": list(event.tags),
        "rcpt_meta": dict(event.metadata),
        "friendly_from": "news@sim.mailpulse.dev",
        "msg_from": "msprvs1=sim@bounces.sim.mailpulse.dev",
        "routing_domain": event.recipient.rpartition("@")[2],
    }
    if event.campaign is not None:
        body["campaign_id"] = event.campaign
    body.update(_details(event, kind))
    return {"msys": {event_class: body}}


def _details(event: SimulatedEvent, kind: str) -> dict[str, Any]:
    """The fields that depend on the kind of event."""
    if kind == "bounce":
        status = event.smtp_status or ("5.1.1" if event.bounce_class == "hard" else "4.2.2")
        reason = event.reason or f"550 {status} mailbox unavailable"
        code = _BOUNCE_CODES.get(event.bounce_class or "undetermined", "1")
        return {"bounce_class": code, "reason": reason, "raw_reason": reason, "error_code": "550"}
    if kind == "delay":
        reason = event.reason or "421 4.7.0 try again later"
        return {"bounce_class": "70", "reason": reason, "raw_reason": reason, "error_code": "421"}
    if kind in ("policy_rejection", "generation_failure"):
        reason = _DROP_REASONS.get(
            event.bounce_class or "", event.reason or _DROP_REASONS["policy"]
        )
        if kind == "generation_failure":
            reason = event.reason or "template rendering failed"
        return {"bounce_class": "25", "reason": reason, "raw_reason": reason, "error_code": "554"}
    if kind == "spam_complaint":
        return {"fbtype": "abuse", "report_by": "fbl.sim.mailpulse.dev"}
    details: dict[str, Any] = {}
    if kind in ("open", "click", "link_unsubscribe"):
        if event.user_agent:
            details["user_agent"] = event.user_agent
        if event.ip:
            details["ip_address"] = event.ip
    if kind == "click":
        details["target_link_url"] = event.url or "https://example.com/"
    return details


class SparkPostEsp(Esp):
    """SparkPost's sending side."""

    provider = SparkPostProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A SparkPost-shaped message id: 20 hex digits."""
        return hashlib.sha256(f"message:{seed}:{sequence}".encode()).hexdigest()[:20]

    def write(self, batch: Batch) -> OutboundRequest:
        """One batch as SparkPost posts it, with the sender's Basic credentials or token."""
        events, url, now, sender = batch
        items = [sparkpost_event(event) for event in events]
        body = orjson.dumps(items)
        ids = ",".join(event_id(event) for event in events)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SparkPost",
            # The same batch resent carries the same batch id.
            BATCH_HEADER: hashlib.sha256(ids.encode()).hexdigest()[:32],
        }
        headers.update(self.sender_headers(sender))
        return OutboundRequest(headers=headers, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Random Basic credentials (SparkPost's ``auth_type: basic``), the same on both sides."""
        return shared({shared_secret.BASIC_AUTH: f"sparkpost:{secrets.token_urlsafe(24)}"})
