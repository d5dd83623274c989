"""``brevo``: Brevo (ex-Sendinblue) transactional email webhooks.

Brevo signs nothing. A source proves the sender with ``basic_auth`` (credentials in the
webhook URL, sent as ``Authorization: Basic``) and/or ``header_token``: Brevo's "Bearer token
authorization", checked as ``Authorization: Bearer <token>`` (set ``token_header`` when the
token travels in a custom header instead). Every configured mechanism must pass.

The body is one event object per POST, or with the ``batched`` webhook option a JSON array
of up to 500 of them; both are accepted. Mapping: :mod:`.mapping`; the ESP's side for the
simulator: :mod:`mailpulse.simulate.esp.brevo`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers import shared_secret
from ingest.providers.base import (
    NormalizeContext,
)
from ingest.providers.brevo.mapping import normalize_event
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, mapping_errors, object_or_array

TOKEN_HEADER = "authorization"


class BrevoProvider(shared_secret.SharedSecretProvider):
    """Brevo's transactional webhooks, authenticated by Basic credentials and/or a token."""

    name = "brevo"
    token_header = TOKEN_HEADER
    content_types = frozenset({"application/json"})
    dedup_key = (
        "a hash of event, `message-id`, `email`, `ts_event` (and `link` for clicks); "
        "Brevo's `id` is the webhook's, and `unique_opened` shares the id of its `opened`"
    )
    default_campaign_field = "tags"
    credential_headers = frozenset({"authorization"})
    max_batch = 1  # one event per POST unless the webhook is created with batched: true
    emits = MESSAGE_EVENT_TYPES  # no resubscribe event exists

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """One event object, or the array a batched webhook posts."""
        return object_or_array(body, "body must be a Brevo event object or an array of them")

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One event object to a row (none for contact and SMS events)."""
        with mapping_errors("event"):
            return normalize_event(item, self.campaign_field(context))
