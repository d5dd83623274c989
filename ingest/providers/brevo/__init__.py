"""``brevo``: Brevo (ex-Sendinblue) transactional email webhooks.

Brevo signs nothing. A source proves the sender with ``basic_auth`` (credentials in the
webhook URL, sent as ``Authorization: Basic``) and/or ``header_token``: Brevo's "Bearer token
authorization", checked as ``Authorization: Bearer <token>`` (set ``token_header`` when the
token travels in a custom header instead). Every configured mechanism must pass.

The body is one event object per POST, or with the ``batched`` webhook option a JSON array
of up to 500 of them; both are accepted. Mapping: :mod:`.mapping`; the ESP's side for the
simulator: :mod:`.simulate`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ingest.errors import MappingError, PayloadError
from ingest.events import Event
from ingest.providers import shared_secret
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    OutboundRequest,
    Provider,
    SimulatedEvent,
)
from ingest.providers.brevo.mapping import normalize_event
from ingest.providers.brevo.simulate import BREVO_EVENTS, brevo_event, webhook_id
from mailpulse.config import SourceConfig

TOKEN_HEADER = "authorization"


class BrevoProvider(Provider):
    """Brevo's transactional webhooks, authenticated by Basic credentials and/or a token."""

    name = "brevo"
    credential_keys = shared_secret.KEYS
    option_keys = frozenset({shared_secret.TOKEN_HEADER_OPTION})
    content_types = frozenset({"application/json"})
    dedup_key = (
        "a hash of event, `message-id`, `email`, `ts_event` (and `link` for clicks); "
        "Brevo's `id` is the webhook's, and `unique_opened` shares the id of its `opened`"
    )
    default_campaign_field = "tags"
    credential_headers = frozenset({"authorization"})
    max_batch = 1  # one event per POST unless the webhook is created with batched: true
    emits = frozenset(BREVO_EVENTS)  # no resubscribe event exists

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """``basic_auth`` and/or ``header_token``, well-formed."""
        return shared_secret.config_problems(source)

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Basic credentials and/or the bearer token, compared in constant time."""
        shared_secret.check(request.headers, self.source, default_token_header=TOKEN_HEADER)

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """One event object, or the array a batched webhook posts."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"body is not JSON: {exc}") from None
        if isinstance(document, list):
            return document
        if isinstance(document, dict):
            return [document]
        raise PayloadError("body must be a Brevo event object or an array of them")

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One event object to a row (none for contact and SMS events)."""
        try:
            return normalize_event(item, self.campaign_field(context))
        except MappingError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # odd values in shared helpers
            raise MappingError(f"event cannot be mapped: {exc}") from None

    def message_id(self, sequence: int, seed: int) -> str:
        """A Brevo-shaped ``message-id``: ``<digits.digits@relay>``, in angle brackets."""
        digits = int.from_bytes(hashlib.sha256(f"message:{seed}:{sequence}".encode()).digest()[:5])
        return f"<{sequence:012d}.{digits:013d}@smtp-relay.sim.mailpulse.dev>"

    def encode(
        self,
        events: Sequence[SimulatedEvent],
        *,
        url: str,
        now: float,
        sender: Mapping[str, str],
    ) -> OutboundRequest:
        """One event object (several: the batched array), with the sender's credentials."""
        hook = webhook_id(url)
        items = [brevo_event(event, hook) for event in events]
        body = orjson.dumps(items[0] if len(items) == 1 else items)
        headers = {"Content-Type": "application/json"}
        if sender.get(shared_secret.BASIC_AUTH):
            headers["Authorization"] = shared_secret.basic_header(sender[shared_secret.BASIC_AUTH])
        if sender.get(shared_secret.HEADER_TOKEN):
            header = sender.get(shared_secret.TOKEN_HEADER_OPTION) or "Authorization"
            token = sender[shared_secret.HEADER_TOKEN]
            headers[header] = f"Bearer {token}" if header.lower() == "authorization" else token
        return OutboundRequest(headers=headers, body=body)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """A random bearer token (Brevo's token authorization), the same on both sides."""
        token = secrets.token_urlsafe(32)
        return {shared_secret.HEADER_TOKEN: token}, {shared_secret.HEADER_TOKEN: token}
