"""``generic``: mailpulse's own signed format, for in-house senders and unknown ESPs.

Authentication (DESIGN.md, "The generic format"): ``X-Webhook-Timestamp: <unix seconds>`` and
``X-Webhook-Signature: sha256=<hex>`` where the hex is HMAC-SHA256(secret,
``<timestamp>.<raw body>``), within 300 s of our clock. The body is one event object, a JSON
array of them, or ``{"events": [...]}``. Each event's ``id`` dedups it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from ingest.errors import AuthenticationFailed, MappingError, PayloadError
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
)
from ingest.providers.events import (
    AGENTS,
    BOUNCE_CLASSES,
    EVENT_TYPES,
    Event,
    json_text,
    load_json,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    string_list,
)
from ingest.providers.freshness import require_fresh, unix_seconds

TOLERANCE_SECONDS = 300
TIMESTAMP_HEADER = "x-webhook-timestamp"
SIGNATURE_HEADER = "x-webhook-signature"
#: Optional event fields kept as text under the same name in :class:`Event`.
_TEXT_FIELDS = frozenset({"message_id", "url", "user_agent", "ip", "smtp_status", "reason"})


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Webhook-Signature`` value for a body: what senders (and tests) compute."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class GenericProvider(Provider):
    """Our own HMAC-signed JSON format."""

    name = "generic"
    credential_keys = frozenset({"secret"})
    content_types = frozenset({"application/json"})
    dedup_key = "each event's `id`"
    credential_headers = frozenset({"authorization", SIGNATURE_HEADER})
    max_batch = 50

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Check the HMAC over ``<timestamp>.<body>`` against every configured secret."""
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not timestamp:
            raise AuthenticationFailed(
                "X-Webhook-Timestamp header is missing", code="missing_timestamp"
            )
        if not signature:
            raise AuthenticationFailed(
                "X-Webhook-Signature header is missing", code="missing_signature"
            )
        sent = unix_seconds(timestamp, field="X-Webhook-Timestamp")
        require_fresh(sent, now, field="X-Webhook-Timestamp", back=TOLERANCE_SECONDS)
        given = signature.strip().encode("ascii", "replace")
        signed = timestamp.encode() + b"." + request.body
        for secret in self.source.credentials.get("secret", ()):
            expected = hmac.digest(secret.reveal().encode(), signed, "sha256").hex()
            if hmac.compare_digest(b"sha256=" + expected.encode(), given):
                return
        raise AuthenticationFailed("signature does not match", code="bad_signature")

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """One object, an array, or ``{"events": [...]}``."""
        document = load_json(body)
        if isinstance(document, list):
            return document
        if isinstance(document, dict):
            if "events" in document and not ("id" in document and "type" in document):
                events = document["events"]
                if not isinstance(events, list):
                    raise PayloadError('"events" must be an array')
                return events
            return [document]
        raise PayloadError('body must be an event object, an array or {"events": [...]}')

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """Validate one event object against the generic format."""
        if not isinstance(item, dict):
            raise MappingError("an event must be a JSON object")
        event_id = optional_str(item.get("id"), limit=512)
        if event_id is None:
            raise MappingError("event has no id")
        event_type = item.get("type")
        if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
            raise MappingError(f"type {str(event_type)[:40]!r} is not one of the event types")
        bounce_class = optional_str(item.get("bounce_class"))
        if event_type == "bounced":
            if bounce_class is None:
                bounce_class = "undetermined"
            elif bounce_class not in BOUNCE_CLASSES:
                raise MappingError(
                    f"bounce_class {bounce_class[:40]!r} is not hard/soft/undetermined"
                )
        agent = optional_str(item.get("agent"))
        if agent is not None and agent not in AGENTS:
            raise MappingError(f"agent {agent[:40]!r} is not one of {sorted(AGENTS)}")
        campaign_field = self.campaign_field(context) or "campaign"
        occurred_at = parse_timestamp(item.get("timestamp"))
        recipient = normalize_recipient(item.get("email"))
        # Only the text fields an event carries are read: most events have few of them.
        texts = {name: optional_str(item[name]) for name in _TEXT_FIELDS.intersection(item)}
        return [
            Event(
                event_id=event_id,
                event_type=event_type,
                occurred_at=occurred_at,
                recipient=recipient,
                raw=orjson.dumps(item).decode(),
                campaign=optional_str(item.get(campaign_field)),
                tags=string_list(item.get("tags")),
                metadata=json_text(item.get("metadata")),
                bounce_class=bounce_class,
                agent=agent,
                agent_reason="esp flag: agent field" if agent else None,
                **texts,
            )
        ]
