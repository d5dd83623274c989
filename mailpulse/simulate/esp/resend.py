"""The Resend side of ``mailpulse simulate``: simulated events in Resend's wire format."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.providers.resend import PREFIXES, SECRET_PREFIX, ResendProvider, sign
from ingest.providers.resend.mapping import TYPES
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent, shared


def _iso(seconds: float) -> str:
    """Resend's timestamps: ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(round(seconds, 3), tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SIM_TYPES = {value: key for key, value in TYPES.items() if key != "email.failed"}


def resend_event(event: SimulatedEvent) -> dict[str, Any]:
    """A simulated event in Resend's wire format."""
    kind = _SIM_TYPES[event.event_type]
    tags = [{"name": "campaign", "value": event.campaign}] if event.campaign else []
    tags += [{"name": name, "value": value} for name, value in event.metadata.items()]
    data: dict[str, Any] = {
        "created_at": _iso(event.occurred_at),
        "email_id": event.message_id,
        "from": "Acme <news@sim.mailpulse.dev>",
        "to": [event.recipient],
        "subject": event.campaign or "Hello",
        "tags": tags,
    }
    if event.event_type == "bounced":
        data["bounce"] = _sim_bounce(event)
    elif event.event_type == "dropped":
        if event.bounce_class == "bounced":
            kind = "email.bounced"
            data["bounce"] = {
                "type": "Permanent",
                "subType": "Suppressed",
                "message": event.reason or "The recipient's address is on the suppression list.",
            }
        else:
            kind = "email.failed"
            data["failed"] = {"reason": event.reason or "reached_daily_quota"}
    elif event.event_type in ("opened", "clicked"):
        action = {"ipAddress": event.ip, "timestamp": _iso(event.occurred_at)}
        action["userAgent"] = event.user_agent
        if event.event_type == "clicked":
            action["link"] = event.url
        data["open" if event.event_type == "opened" else "click"] = action
    return {"type": kind, "created_at": _iso(event.occurred_at), "data": data}


def _sim_bounce(event: SimulatedEvent) -> dict[str, Any]:
    bounce_type = {"hard": "Permanent", "soft": "Transient"}.get(
        event.bounce_class or "", "Undetermined"
    )
    bounce: dict[str, Any] = {
        "type": bounce_type,
        "subType": {"Permanent": "General", "Transient": "MailboxFull"}.get(bounce_type, "None"),
        "message": event.reason or "The message bounced.",
    }
    if event.reason:
        bounce["diagnosticCode"] = [f"smtp; {event.reason}"]
    return bounce


class ResendEsp(Esp):
    """Resend's sending side."""

    provider = ResendProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """A Resend-shaped ``email_id``: a UUID, deterministic from seed and sequence."""
        digest = hashlib.sha256(f"resend:{seed}:{sequence}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def write(self, batch: Batch) -> OutboundRequest:
        """One event as Resend posts it, signed; ``svix-*`` and ``webhook-*`` headers alternate."""
        events, url, now, sender = batch
        (event,) = events
        body = orjson.dumps(resend_event(event))
        msg_id = (
            "msg_"
            + hashlib.sha256(f"{event.sequence}:{event.message_id}".encode()).hexdigest()[:27]
        )
        timestamp = int(now)
        prefix = PREFIXES[event.sequence % 2]
        return OutboundRequest(
            headers={
                "Content-Type": "application/json",
                f"{prefix}id": msg_id,
                f"{prefix}timestamp": str(timestamp),
                f"{prefix}signature": sign(sender["secret"], msg_id, timestamp, body),
            },
            body=body,
        )

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """One random ``whsec_`` secret, shared by both sides."""
        return shared(
            {"secret": SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()}
        )
