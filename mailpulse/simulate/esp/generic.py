"""The generic side for ``mailpulse simulate``: requests as the ESP sends them."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from ingest.providers.generic import GenericProvider, sign
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared


class GenericEsp(Esp):
    """Generic's sending side."""

    provider = GenericProvider

    def write(self, batch: Batch) -> OutboundRequest:
        """An array of generic events (a single object when there is one), HMAC-signed."""
        events, url, now, sender = batch
        items = [_generic_event(event) for event in events]
        body = orjson.dumps(items[0] if len(items) == 1 else items)
        timestamp = int(now)
        return OutboundRequest(
            headers={
                "Content-Type": "application/json",
                "X-Webhook-Timestamp": str(timestamp),
                "X-Webhook-Signature": sign(sender["secret"], timestamp, body),
            },
            body=body,
        )

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """One random secret, shared by both sides."""
        return shared({"secret": secrets.token_urlsafe(32)})


def _generic_event(event: SimulatedEvent) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"sim-{event.sequence}",
        "type": event.event_type,
        "timestamp": round(event.occurred_at, 3),
        "email": event.recipient,
        "message_id": event.message_id,
    }
    optional = {
        "campaign": event.campaign,
        "tags": list(event.tags) or None,
        "url": event.url,
        "user_agent": event.user_agent,
        "ip": event.ip,
        "agent": event.agent,
        "bounce_class": event.bounce_class,
        "smtp_status": event.smtp_status,
        "reason": event.reason,
        "metadata": dict(event.metadata) or None,
    }
    item.update((key, value) for key, value in optional.items() if value is not None)
    return item
