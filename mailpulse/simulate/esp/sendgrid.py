"""SendGrid's side of a webhook, for ``mailpulse simulate``: event objects as SendGrid writes them.

The body is a JSON array with sorted keys and no spaces, ending in ``\\r\\n``, as SendGrid's own
SDK tests show it. Ids derive from the event's sequence and message id, so a retry of the same
event carries the same ``sg_event_id``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from ingest.providers import shared_secret
from ingest.providers.sendgrid import PUBLIC_KEY, SendGridProvider, signature
from ingest.providers.sendgrid.mapping import RESERVED_KEYS
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent

#: mailpulse event type -> SendGrid ``event``.
SENDGRID_EVENTS = {
    "sent": "processed",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounced": "bounce",
    "dropped": "dropped",
    "opened": "open",
    "clicked": "click",
    "complained": "spamreport",
    "unsubscribed": "unsubscribe",
    "resubscribed": "group_resubscribe",
}
#: Drop class -> the reason text SendGrid writes for it.
DROP_REASONS = {
    "bounced": "Bounced Address",
    "invalid": "Invalid",
    "unsubscribed": "Unsubscribed Address",
    "complained": "Spam Reporting Address",
    "content": "Spam Content",
    "quota": "Recipient List over Package Quota",
    "invalid_request": "Invalid SMTPAPI header",
}
_BOUNCE_TYPES = {"hard": "bounce", "soft": "blocked"}  # undetermined: no type, as legacy events
_ASM_GROUP = 1
_SIM_FILTER = "filterdrecv-sim"


def token(*parts: object) -> str:
    """A deterministic URL-safe id of 22 characters, the shape of SendGrid's ids."""
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def message_id(sequence: int, seed: int) -> str:
    """An ``sg_message_id``: ``<X-Message-Id>.<filter instance>.<n>``."""
    return f"{token('message', seed, sequence)}.{_SIM_FILTER}-{seed % 1000}.0"


def sendgrid_event(event: SimulatedEvent) -> dict[str, Any]:
    """One SimulatedEvent as the SendGrid event object that reports it."""
    name = SENDGRID_EVENTS[event.event_type]
    x_message_id = event.message_id.split(".", 1)[0]
    item: dict[str, Any] = {
        "email": event.recipient,
        "timestamp": int(event.occurred_at),
        "event": name,
        "sg_event_id": token("event", event.sequence, event.message_id, name),
        "sg_message_id": event.message_id,
        "smtp-id": f"<{x_message_id}@ismtpd-sim.sendgrid.net>",
    }
    # SendGrid's own keys win over a custom arg of the same name: such args never arrive.
    item.update({k: v for k, v in event.metadata.items() if k not in RESERVED_KEYS})
    if event.campaign is not None:
        item["campaign"] = event.campaign
    if event.tags:
        item["category"] = event.tags[0] if len(event.tags) == 1 else list(event.tags)
    item.update(_details(event, name))
    return item


def _details(event: SimulatedEvent, name: str) -> dict[str, Any]:
    """The fields that depend on the kind of event."""
    if name == "processed":
        return {}
    if name == "delivered":
        return {"response": event.reason or f"250 {event.smtp_status or '2.0.0'} OK", "tls": 1}
    if name == "deferred":
        return {"response": event.reason or "421 4.7.0 try again later", "attempt": "1"}
    if name == "bounce":
        status = event.smtp_status or ("5.1.1" if event.bounce_class == "hard" else "4.2.2")
        details = {"reason": event.reason or f"550 {status} mailbox unavailable", "status": status}
        kind = _BOUNCE_TYPES.get(event.bounce_class or "")
        return {**details, "type": kind} if kind else details
    if name == "dropped":
        reason = DROP_REASONS.get(event.bounce_class or "") or event.reason or "Invalid"
        return {"reason": reason, "status": event.smtp_status or "5.0.0"}
    engagement: dict[str, Any] = {}
    if event.user_agent:
        engagement["useragent"] = event.user_agent
    if event.ip:
        engagement["ip"] = event.ip
    if name == "open":
        engagement["sg_machine_open"] = event.agent == "apple_mpp"
    elif name == "click":
        engagement["url"] = event.url or "https://example.com/"
        engagement["url_offset"] = {"index": 0, "type": "html"}
    elif name == "group_resubscribe":
        engagement["asm_group_id"] = _ASM_GROUP
    return engagement


class SendGridEsp(Esp):
    """SendGrid's sending side."""

    provider = SendGridProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """An ``sg_message_id``-shaped id."""
        return message_id(sequence, seed)

    def write(self, batch: Batch) -> OutboundRequest:
        """A JSON array as SendGrid posts it, signed with the sender's ``private_key``."""
        events, url, now, sender = batch
        items = [sendgrid_event(event) for event in events]
        body = orjson.dumps(items, option=orjson.OPT_SORT_KEYS) + b"\r\n"
        timestamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Signature": signature.sign(
                sender["private_key"], timestamp, body
            ),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        if sender.get("header_token"):
            headers["Authorization"] = f"Bearer {sender['header_token']}"
        elif sender.get("basic_auth"):
            headers["Authorization"] = shared_secret.basic_header(sender["basic_auth"])
        return OutboundRequest(headers=headers, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A fresh P-256 pair: the public half for the receiver, the private PEM for SendGrid."""
        public_key, private_key = signature.generate_key_pair()
        return {PUBLIC_KEY: public_key}, {"private_key": private_key}
