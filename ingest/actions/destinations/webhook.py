"""``do = "webhook"``: a signed POST of the event, as Standard Webhooks defines it.

The body is ``{"type": "email.<event_type>", "timestamp": ..., "action": ..., "data": event}``;
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` let the receiver verify it with
any Standard Webhooks library. The id is the delivery's, the same on every attempt, so the
receiver can drop a repeat; the timestamp is the attempt's, so a retry is not too old to verify.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from standardwebhooks.webhooks import Webhook

from ingest.actions.destinations.base import Answer, Delivery
from ingest.actions.destinations.http import HttpClient
from mailpulse.actions_config import ActionConfig


class WebhookDestination:
    """POSTs each delivery to the action's URL, signed with its ``whsec_`` secret."""

    def __init__(self, action: ActionConfig) -> None:
        secret = action.secret("secret")
        if secret is None:
            raise ValueError(f"action {action.name} has no signing secret")
        self.name = action.name
        self.url: str = action.options["url"]
        self._signer = Webhook(secret)
        self._headers = {name: value.reveal() for name, value in action.headers.items()}
        self._http = HttpClient(action)

    def body(self, delivery: Delivery) -> bytes:
        """The JSON body for ``delivery``: serialized once, signed and sent as these bytes."""
        event = dict(delivery.event)
        return orjson.dumps(
            {
                "type": f"email.{event.get('event_type')}",
                "timestamp": event.get("occurred_at"),
                "action": self.name,
                "data": event,
            }
        )

    def send(self, delivery: Delivery) -> Answer:
        """POST ``delivery`` once, signed now."""
        body = self.body(delivery)
        now = int(time.time())
        signature = self._signer.sign(delivery.webhook_id, datetime.fromtimestamp(now, UTC), body)
        headers = {
            # The configured headers first: the protocol's own cannot be overridden by them.
            **self._headers,
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature,
        }
        return self._http.post(self.url, headers=headers, data=body)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
