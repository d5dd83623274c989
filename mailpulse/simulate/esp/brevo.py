"""Brevo's side of a webhook, for ``mailpulse simulate``: event objects as Brevo writes them.

Brevo sends no event id, so a retry is recognised by its content: an event encodes the same
way every time. One simulated event is one Brevo event: a first open is sent as ``opened``
only (Brevo may add a ``unique_opened`` twin, which the mapping folds into the same id), and
an open the ESP flags as a machine's is sent as ``proxy_open``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ingest.providers import shared_secret
from ingest.providers.brevo import BrevoProvider
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

#: mailpulse event type -> Brevo ``event`` (bounces and drops are refined below).
BREVO_EVENTS = {
    "sent": "request",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounced": "soft_bounce",
    "dropped": "blocked",
    "opened": "opened",
    "clicked": "click",
    "complained": "spam",
    "unsubscribed": "unsubscribed",
}
#: Drop class -> (Brevo event, reason) that reports it.
DROPS = {
    "invalid": ("invalid_email", None),
    "error": ("error", "error while sending the message"),
    "bounced": ("blocked", "blocked : due to hard bounce"),
    "unsubscribed": ("blocked", "blocked : due to unsubscribed user"),
    "complained": ("blocked", "blocked : due to spam complaint"),
    "suppressed": ("blocked", "blocked : contact in blacklist"),
    "policy": ("blocked", "blocked : sender policy"),
}
_DEFAULT_REASONS = {
    "hard_bounce": "550 5.1.1 The email account that you tried to reach does not exist",
    "soft_bounce": "452 4.2.2 Mailbox full",
    "deferred": "421 4.7.0 Try again later",
}
_SENDING_IP = "192.0.2.25"


def webhook_id(url: str) -> int:
    """Brevo's ``id``: the webhook's, one number for every event it posts."""
    return int.from_bytes(hashlib.sha256(f"webhook:{url}".encode()).digest()[:3]) or 1


def brevo_event(event: SimulatedEvent, hook: int) -> dict[str, Any]:
    """One SimulatedEvent as the Brevo event object that reports it."""
    name, reason = _name_and_reason(event)
    millis = round(event.occurred_at * 1000)
    seconds = millis // 1000
    item: dict[str, Any] = {
        "event": name,
        "email": event.recipient,
        "id": hook,
        "date": _local_date(seconds),
        "ts": seconds,
        "message-id": event.message_id,
        "ts_event": seconds,
        "subject": event.campaign or "Your message",
        "sending_ip": _SENDING_IP,
        "ts_epoch": millis,
    }
    tags = _tags(event)
    if tags:
        item["tags"] = tags
        item["tag"] = orjson.dumps(tags).decode()
    if event.metadata:
        item["X-Mailin-custom"] = orjson.dumps(dict(event.metadata)).decode()
    if reason is not None:
        item["reason"] = reason
    if event.event_type in ("opened", "clicked"):
        item["link"] = (event.url or "https://example.com/") if name == "click" else ""
    if event.user_agent and event.event_type in ("opened", "clicked", "unsubscribed"):
        item["user_agent"] = event.user_agent
    return item


def _name_and_reason(event: SimulatedEvent) -> tuple[str, str | None]:
    kind = event.event_type
    if kind == "dropped":
        return DROPS.get(event.bounce_class or "policy", DROPS["policy"])
    if kind == "opened":
        return ("proxy_open" if event.agent else "opened"), None
    name = BREVO_EVENTS[kind]
    if kind == "bounced":
        # Brevo knows hard and soft only: an undetermined bounce goes out as a soft one.
        name = "hard_bounce" if event.bounce_class == "hard" else "soft_bounce"
    if name not in _DEFAULT_REASONS:
        return name, None
    reason = event.reason or _DEFAULT_REASONS[name]
    if event.smtp_status and event.smtp_status not in reason:
        reason = f"{event.smtp_status} {reason}"
    return name, reason


def _tags(event: SimulatedEvent) -> list[str]:
    """Brevo has tags only: the campaign travels as the first tag."""
    if event.campaign is None:
        return list(event.tags)
    return [event.campaign, *(tag for tag in event.tags if tag != event.campaign)]


def _local_date(seconds: int) -> str:
    """``date`` as Brevo writes it: CET/CEST wall-clock time."""
    zone: tzinfo
    try:
        zone = ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:  # no time zone data: ts_event carries the time anyway
        zone = UTC
    return datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M:%S")


class BrevoEsp(Esp):
    """Brevo's sending side."""

    provider = BrevoProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A Brevo-shaped ``message-id``: ``<digits.digits@relay>``, in angle brackets."""
        digits = int.from_bytes(hashlib.sha256(f"message:{seed}:{sequence}".encode()).digest()[:5])
        return f"<{sequence:012d}.{digits:013d}@smtp-relay.sim.mailpulse.dev>"

    def write(self, batch: Batch) -> OutboundRequest:
        """One event object (several: the batched array), with the sender's credentials."""
        events, url, now, sender = batch
        hook = webhook_id(url)
        items = [brevo_event(event, hook) for event in events]
        body = orjson.dumps(items[0] if len(items) == 1 else items)
        headers = {"Content-Type": "application/json"}
        headers.update(self.sender_headers(sender))
        return OutboundRequest(headers=headers, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A random bearer token (Brevo's token authorization), the same on both sides."""
        return shared({shared_secret.HEADER_TOKEN: secrets.token_urlsafe(32)})
