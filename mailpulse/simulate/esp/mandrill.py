"""The mandrill side for ``mailpulse simulate``: requests as the ESP sends them."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import orjson

from ingest.providers.mandrill import EVENTS_FIELD, MandrillProvider, sign
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

_EVENT_NAMES = {
    "sent": "send",
    "delivered": "delivered",
    "deferred": "deferral",
    "opened": "open",
    "clicked": "click",
    "complained": "spam",
    "unsubscribed": "unsub",
    "dropped": "reject",
}
_REJECT_REASONS = {
    "bounced": "hard-bounce",
    "complained": "spam",
    "unsubscribed": "unsub",
    "invalid": "invalid",
}
_STATES = {"bounced": "bounced", "dropped": "rejected", "deferred": "deferred"}


class MandrillEsp(Esp):
    """Mandrill's sending side."""

    provider = MandrillProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """Mandrill's ``_id``: 32 hexadecimal characters."""
        return hashlib.sha256(f"mandrill:{seed}:{sequence}".encode()).hexdigest()[:32]

    def write(self, batch: Batch) -> OutboundRequest:
        """One batch, signed over the URL configured in Mandrill (else the target ``url``)."""
        events, url, now, sender = batch
        value = orjson.dumps([_mandrill_event(event) for event in events]).decode()
        fields = [(EVENTS_FIELD, value)]
        signature = sign(sender["secret"], sender.get("url") or url, fields)
        return OutboundRequest(
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Mandrill-Signature": signature,
            },
            body=urlencode(fields).encode(),
        )

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A random webhook key (Mandrill's are 22 url-safe characters) and the demo URL."""
        return shared({"secret": secrets.token_urlsafe(16), "url": url})


def _mandrill_event(event: SimulatedEvent) -> dict[str, Any]:
    """One event as Mandrill posts it (``ts`` in whole seconds, as Mandrill sends)."""
    if event.event_type == "bounced":
        name = "soft_bounce" if event.bounce_class == "soft" else "hard_bounce"
    else:
        name = _EVENT_NAMES[event.event_type]
    msg: dict[str, Any] = {
        "ts": int(event.occurred_at),
        "email": event.recipient,
        "sender": "news@sim.mailpulse.dev",
        "subject": f"{event.campaign or 'Your'} update",
        "tags": list(event.tags),
        "state": _STATES.get(event.event_type, "sent"),
        "metadata": {**event.metadata, **({"campaign": event.campaign} if event.campaign else {})},
        "_id": event.message_id,
        "_version": event.message_id[:22],
    }
    diag = f"smtp;{event.reason}" if event.reason else None
    if name in ("hard_bounce", "soft_bounce"):
        msg["bounce_description"] = "mailbox_full" if name == "soft_bounce" else "bad_mailbox"
        msg["diag"] = diag
    if name == "deferral":
        msg["smtp_events"] = [
            {"ts": int(event.occurred_at), "type": "deferred", "diag": event.reason or ""}
        ]
    if name == "reject":
        msg["reject_reason"] = _REJECT_REASONS.get(event.bounce_class or "", "custom")
    item: dict[str, Any] = {"event": name, "msg": msg, "_id": event.message_id}
    if name in ("open", "click"):
        item.update(ip=event.ip, user_agent=event.user_agent)
    if name == "click":
        item["url"] = event.url
    item["ts"] = int(event.occurred_at)
    return item
