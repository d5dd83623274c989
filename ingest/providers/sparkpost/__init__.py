"""``sparkpost``: SparkPost (Bird) event webhooks.

SparkPost signs nothing. A source proves the sender with ``basic_auth`` (SparkPost's
``auth_type: basic``) and/or ``header_token``: by default the legacy ``auth_token`` that SparkPost
sends in ``X-MessageSystems-Webhook-Token``; for ``auth_type: oauth2`` set
``token_header = "authorization"`` and list the access token(s) SparkPost obtains from your
token URL as ``header_token`` (checked as ``Authorization: Bearer <token>``). Every configured
mechanism must pass.

The body is a JSON array of ``{"msys": {"<class>_event": {...}}}``; the validation ping
``[{"msys": {}}]`` is accepted and yields no row. Mapping: :mod:`.mapping`; the ESP's side for
the simulator: :mod:`mailpulse.simulate.esp.sparkpost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import PayloadError
from ingest.providers import shared_secret
from ingest.providers.base import (
    NormalizeContext,
)
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, load_json, mapping_errors
from ingest.providers.sparkpost.mapping import normalize_element

TOKEN_HEADER = "x-messagesystems-webhook-token"
BATCH_HEADER = "X-MessageSystems-Batch-ID"


class SparkPostProvider(shared_secret.SharedSecretProvider):
    """SparkPost's batched ``msys`` webhooks, authenticated by Basic and/or a token."""

    name = "sparkpost"
    token_header = TOKEN_HEADER
    content_types = frozenset({"application/json"})
    dedup_key = "`event_id` (without one: a hash of type, message, recipient, time)"
    default_campaign_field = "campaign_id"
    credential_headers = frozenset({"authorization", TOKEN_HEADER})
    max_batch = 350  # "1 to 350 or more events" per batch
    emits = MESSAGE_EVENT_TYPES  # no resubscribe event exists

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The batch's elements, each ``{"msys": {...}}``."""
        document = load_json(body)
        if isinstance(document, list):
            return document
        if isinstance(document, dict) and "msys" in document:
            return [document]
        raise PayloadError('body must be a JSON array of {"msys": {...}} objects')

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One batch element to rows (none for pings, relay and SMS events)."""
        with mapping_errors("event"):
            return normalize_element(item, self.campaign_field(context))
