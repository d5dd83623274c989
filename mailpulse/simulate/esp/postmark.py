"""The postmark side for ``mailpulse simulate``: requests as the ESP sends them."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.providers import shared_secret
from ingest.providers.postmark import PostmarkProvider
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

_SIM_BOUNCES = {
    "hard": ("HardBounce", "The server was unable to deliver your message."),
    "soft": ("SoftBounce", "The server could not temporarily deliver your message."),
}


class PostmarkEsp(Esp):
    """Postmark's sending side."""

    provider = PostmarkProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A Postmark-shaped ``MessageID``: a UUID, deterministic from seed and sequence."""
        digest = hashlib.sha256(f"postmark:{seed}:{sequence}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def write(self, batch: Batch) -> OutboundRequest:
        """One record as Postmark posts it, with Basic credentials and/or the token header."""
        events, url, now, sender = batch
        (event,) = events
        digest = hashlib.sha256(f"trace:{event.sequence}:{event.message_id}".encode()).digest()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Postmark",
            "X-PM-Webhook-Trace-Id": str(uuid.UUID(bytes=digest[:16], version=4)),
        }
        headers.update(self.sender_headers(sender))
        return OutboundRequest(headers=headers, body=orjson.dumps(_postmark_record(event)))

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Random Basic credentials and a header token, the same on both sides."""
        basic = f"postmark:{secrets.token_urlsafe(24)}"
        token = secrets.token_urlsafe(32)
        return shared({shared_secret.BASIC_AUTH: basic, shared_secret.HEADER_TOKEN: token})


def _postmark_record(event: SimulatedEvent) -> dict[str, Any]:
    """A simulated event in Postmark's wire format."""
    record: dict[str, Any] = {
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": event.message_id,
        "Tag": event.campaign or "",
        "Metadata": dict(event.metadata),
    }
    at = _iso(event.occurred_at)
    kind = event.event_type
    if kind in ("bounced", "complained"):
        bounce_type, description = (
            ("SpamComplaint", "The subscriber explicitly marked this message as spam.")
            if kind == "complained"
            else _SIM_BOUNCES.get(event.bounce_class or "", ("Unknown", "Unknown bounce."))
        )
        if kind == "bounced" and bounce_type == "Unknown":
            bounce_type = "Unrecognized"  # maps to bounced, undetermined
        bounce_id = int.from_bytes(hashlib.sha256(str(event.sequence).encode()).digest()[:6])
        record |= {
            "RecordType": "SpamComplaint" if kind == "complained" else "Bounce",
            "ID": bounce_id,
            "Type": bounce_type,
            "Description": description,
            "Details": f"smtp;{event.reason}" if event.reason else "",
            "Email": event.recipient,
            "BouncedAt": at,
            "Inactive": bounce_type in ("HardBounce", "SpamComplaint"),
        }
    elif kind in ("unsubscribed", "resubscribed"):
        record |= {
            "RecordType": "SubscriptionChange",
            "Recipient": event.recipient,
            "ChangedAt": at,
            "Origin": "Recipient",
            "SuppressSending": kind == "unsubscribed",
            "SuppressionReason": "ManualSuppression" if kind == "unsubscribed" else None,
        }
    else:
        record |= _delivery_or_engagement(event, at)
    return record


def _delivery_or_engagement(event: SimulatedEvent, at: str) -> dict[str, Any]:
    if event.event_type == "delivered":
        return {
            "RecordType": "Delivery",
            "Recipient": event.recipient,
            "DeliveredAt": at,
            "Details": "smtp;250 2.0.0 OK",
        }
    engagement: dict[str, Any] = {
        "Recipient": event.recipient,
        "ReceivedAt": at,
        "Platform": "Unknown",
        "UserAgent": event.user_agent or "",
        "Geo": {"IP": event.ip} if event.ip else {},
    }
    if event.event_type == "opened":
        return {"RecordType": "Open", "FirstOpen": True, "ReadSeconds": 0, **engagement}
    return {"RecordType": "Click", "ClickLocation": "HTML", "OriginalLink": event.url, **engagement}


def _iso(seconds: float) -> str:
    """Postmark's timestamps: ISO 8601 UTC with seven fractional digits."""
    moment = datetime.fromtimestamp(round(seconds, 6), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
