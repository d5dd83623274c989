"""The Mailgun side for ``mailpulse simulate``: ``event-data`` objects as Mailgun writes them.

Ids derive from the event's sequence and message id, so every retry of an event carries the
same ``event-data.id``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import orjson

from ingest.providers.mailgun import PARENT_SIGNING_KEY, SIGNING_KEY, MailgunProvider, sign
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared

_SIMPLE = {
    "sent": "accepted",
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}
_BOTS = {"apple_mpp": "apple", "gmail_proxy": "gmail", "scanner": "generic", "bot": "generic"}
_SUPPRESSIONS = {
    "bounced": "suppress-bounce",
    "unsubscribed": "suppress-unsubscribe",
    "complained": "suppress-complaint",
}
_DOMAIN = "mg.sim.mailpulse.dev"


def message_id(sequence: int, seed: int) -> str:
    """``<yyyymmddhhmmss-like digits>.<16 hex>@<sending domain>``, deterministic."""
    digest = hashlib.sha256(f"mailgun:{seed}:{sequence}".encode()).hexdigest()
    return f"{seed:06d}{sequence:014d}.{digest[:16]}@{_DOMAIN}"


def event_id(event: SimulatedEvent) -> str:
    """A 22-character url-safe id like Mailgun's, fixed by sequence and message id."""
    digest = hashlib.sha256(f"{event.sequence}:{event.message_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def event_data(event: SimulatedEvent) -> dict[str, Any]:
    """The ``event-data`` object Mailgun would post for ``event``."""
    data: dict[str, Any] = {
        "id": event_id(event),
        "timestamp": event.occurred_at,
        "log-level": "info",
        "recipient": event.recipient,
        "recipient-domain": event.recipient.rpartition("@")[2],
        "message": {"headers": {"message-id": event.message_id}},
        "campaigns": [{"id": event.campaign, "name": event.campaign}] if event.campaign else [],
        "tags": list(event.tags),
        "user-variables": dict(event.metadata) or [],
    }
    if event.event_type in _SIMPLE:
        data["event"] = _SIMPLE[event.event_type]
    else:
        data.update(_failure(event))
    if event.event_type == "delivered":
        data["delivery-status"] = _status(event, 250, "OK")
    if event.event_type in ("opened", "clicked", "unsubscribed", "complained"):
        data["ip"] = event.ip
        data["client-info"] = {
            "user-agent": event.user_agent,
            "bot": _BOTS.get(event.agent or ""),
        }
    if event.event_type == "clicked":
        data["url"] = event.url
    return data


def _failure(event: SimulatedEvent) -> dict[str, Any]:
    """``failed`` with the severity and reason that map back to the event's type and class."""
    text = event.reason or ""
    if event.event_type == "deferred":
        return {
            "event": "failed",
            "severity": "temporary",
            "reason": "generic",
            "log-level": "warn",
            "delivery-status": {**_status(event, 451, text), "retry-seconds": 600},
        }
    if event.event_type == "dropped":
        return {
            "event": "failed",
            "severity": "permanent",
            "reason": _SUPPRESSIONS.get(event.bounce_class or "", "suppress-bounce"),
            "log-level": "error",
            "delivery-status": {
                "code": 605,
                "message": "",
                "description": text or "Not delivering to previously bounced address",
            },
        }
    if event.bounce_class == "soft":  # Mailgun gave up after retrying for hours
        return {
            "event": "failed",
            "severity": "permanent",
            "reason": "old",
            "log-level": "error",
            "delivery-status": _status(event, 452, text),
        }
    status = _status(event, 550, text)
    if event.bounce_class == "hard":
        status["bounce-type"] = "hard"
    else:
        status["code"] = None  # nothing says hard or soft
    return {
        "event": "failed",
        "severity": "permanent",
        "reason": "bounce" if event.bounce_class == "hard" else "generic",
        "log-level": "error",
        "delivery-status": status,
    }


def _status(event: SimulatedEvent, code: int, message: str) -> dict[str, Any]:
    if event.smtp_status and event.smtp_status[0] in "245":
        code = int(event.smtp_status[0]) * 100 + code % 100
    return {
        "attempt-no": 1,
        "code": code,
        "message": message,
        "description": None,
        "enhanced-code": event.smtp_status,
    }


class MailgunEsp(Esp):
    """Mailgun's sending side."""

    provider = MailgunProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A Message-ID as Mailgun writes it in ``message.headers.message-id``."""
        return message_id(sequence, seed)

    def write(self, batch: Batch) -> OutboundRequest:
        """One JSON webhook, signed with a fresh token as each Mailgun attempt is."""
        events, url, now, sender = batch
        if len(events) != 1:
            raise ValueError("Mailgun sends exactly one event per request")
        timestamp = str(int(now))
        token = secrets.token_hex(25)  # 50 characters, like Mailgun's
        signature = {
            "token": token,
            "timestamp": timestamp,
            "signature": sign(sender[SIGNING_KEY], timestamp, token),
        }
        if sender.get(PARENT_SIGNING_KEY):
            signature["parent-signature"] = sign(sender[PARENT_SIGNING_KEY], timestamp, token)
        body = orjson.dumps({"signature": signature, "event-data": event_data(events[0])})
        return OutboundRequest(headers={"Content-Type": "application/json"}, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """One random signing key, shared by both sides (Mailgun's keys are hex)."""
        return shared({SIGNING_KEY: secrets.token_hex(16)})
