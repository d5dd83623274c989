"""Mailjet's side of a webhook, for ``mailpulse simulate``: events as Mailjet writes them.

Mailjet sends no event id, so a retry is recognised by its content: an event encodes the same
way every time. ``MessageID`` goes out as a JSON integer larger than 2^53, as Mailjet's own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from typing import Any

import orjson

from ingest.providers import shared_secret
from ingest.providers.mailjet import MailjetProvider
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

#: Simulated message ids lie in [2^54, 2^63): beyond a float's exact integers, inside 64 bits.
_MESSAGE_ID_BASE = 2**54
_MESSAGE_ID_SPAN = 2**63 - 2**54


#: mailpulse event type -> Mailjet ``event``.
MAILJET_EVENTS = {
    "delivered": "sent",
    "opened": "open",
    "clicked": "click",
    "deferred": "bounce",  # a greylisted bounce, which Mailjet retries
    "bounced": "bounce",
    "dropped": "blocked",
    "complained": "spam",
    "unsubscribed": "unsub",
}
#: Drop class -> (``error_related_to``, ``error``) of the ``blocked`` event that reports it.
BLOCKS = {
    "invalid": ("recipient", "user unknown"),
    "bounced": ("mailjet", "preblocked"),
    "complained": ("recipient", "spam reporter"),
    "suppressed": ("recipient", "blacklisted"),
    "duplicate": ("mailjet", "duplicate in campaign"),
    "generation": ("content", "error in template language"),
    "content": ("spam", "content blocked"),
    "policy": ("spam", "policy issue"),
    "quota": ("recipient", "quota exceeded"),
    "other": ("system", "system issue"),
}
_BOUNCES = {
    "hard": (True, "recipient", "user unknown"),
    "soft": (False, "recipient", "quota exceeded"),
    "undetermined": (None, "domain", "relay/access denied"),
    "deferred": (False, "domain", "greylisted"),
}


def dumps(document: Any) -> bytes:
    """JSON bytes with every integer exact, as Mailjet writes them (no spaces)."""
    try:
        return orjson.dumps(document)
    except TypeError:  # an id beyond 64 bits
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def mailjet_event(event: SimulatedEvent) -> dict[str, Any]:
    """One SimulatedEvent as the Mailjet event object that reports it."""
    name = MAILJET_EVENTS[event.event_type]
    item: dict[str, Any] = {
        "event": name,
        "time": int(event.occurred_at),
        "MessageID": _message_number(event.message_id),
        "Message_GUID": str(uuid.UUID(bytes=_digest("guid", event.message_id)[:16])),
        "email": event.recipient,
        "mj_campaign_id": _number("campaign", event.campaign, 6) if event.campaign else 0,
        "mj_contact_id": _number("contact", event.recipient, 9),
        "customcampaign": event.campaign or "",
    }
    if name == "sent":
        item["mj_message_id"] = event.message_id
        status = event.smtp_status or "2.0.0"
        item["smtp_reply"] = f"sent (250 {status} OK {int(event.occurred_at)} - gsmtp)"
    item["CustomID"] = ""
    item["Payload"] = orjson.dumps(dict(event.metadata)).decode() if event.metadata else ""
    item.update(_details(event, name))
    return item


def _details(event: SimulatedEvent, name: str) -> dict[str, Any]:
    if name == "bounce":
        kind = "deferred" if event.event_type == "deferred" else event.bounce_class
        hard, related, error = _BOUNCES[kind or "undetermined"]
        details: dict[str, Any] = {"blocked": False}
        if hard is not None:
            details["hard_bounce"] = hard
        details.update(error_related_to=related, error=error)
        if event.reason:
            details["comment"] = event.reason
        return details
    if name == "blocked":
        related, error = BLOCKS.get(event.bounce_class or "other", BLOCKS["other"])
        return {"error_related_to": related, "error": error}
    if name == "spam":
        return {"source": "JMRPP"}
    details = {}
    if name == "click":
        details["url"] = event.url or "https://example.com/"
    if name in ("open", "click", "unsub"):
        details.update(ip=event.ip or "", geo="US", agent=event.user_agent or "")
    if name == "unsub":
        details["mj_list_id"] = _number("list", event.campaign, 5)
    return details


def _message_number(message_id: str) -> int | str:
    """The id as the JSON integer Mailjet sends; ids from elsewhere stay strings."""
    return int(message_id) if message_id.isascii() and message_id.isdigit() else message_id


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()


def _number(kind: str, value: object, digits: int) -> int:
    """A stable positive id of at most ``digits`` digits."""
    bound: int = 10**digits - 1
    return int.from_bytes(_digest(kind, value)[:8]) % bound + 1


class MailjetEsp(Esp):
    """Mailjet's sending side."""

    provider = MailjetProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A ``MessageID``: an odd integer above 2^53, so no float can carry it exactly."""
        digest = hashlib.sha256(f"message:{seed}:{sequence}".encode()).digest()
        number = _MESSAGE_ID_BASE + int.from_bytes(digest[:8]) % _MESSAGE_ID_SPAN
        return str(number | 1)

    def write(self, batch: Batch) -> OutboundRequest:
        """One event object (Version 1), or the grouped array when there are several."""
        events, url, now, sender = batch
        items = [mailjet_event(event) for event in events]
        body = dumps(items[0] if len(items) == 1 else items)
        headers = {"Content-Type": "application/json"}
        headers.update(self.sender_headers(sender))
        return OutboundRequest(headers=headers, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Random Basic credentials (the only scheme Mailjet sends), the same on both sides."""
        return shared({shared_secret.BASIC_AUTH: f"mailjet:{secrets.token_urlsafe(24)}"})
