"""``mailjet``: Mailjet's Event API ("Event Tracking") webhooks.

Mailjet signs nothing and can only send credentials it finds in the webhook URL
(``https://user:password@host/webhooks/<source>``, sent as ``Authorization: Basic``): list them
as ``basic_auth``. ``header_token`` is accepted too, for a gateway in front that adds one
(``Authorization: Bearer <token>`` unless ``token_header`` names another header).

The body is one event object per POST (Version 1), or with "Group Events" (Version 2) a JSON
array of the events of the last second, of mixed types. ``MessageID`` is an integer larger than
2^53: :func:`loads` keeps every integer exact, whatever its size. Mapping: :mod:`.mapping`; the
ESP's side for the simulator: :mod:`mailpulse.simulate.esp.mailjet`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ingest.errors import PayloadError
from ingest.providers import shared_secret
from ingest.providers.base import (
    NormalizeContext,
)
from ingest.providers.events import Event, load_json, mapping_errors
from ingest.providers.mailjet import mapping
from ingest.providers.mailjet.mapping import normalize_event

TOKEN_HEADER = "authorization"


class MailjetProvider(shared_secret.SharedSecretProvider):
    """Mailjet's Event API, authenticated by Basic credentials (and/or a gateway's token)."""

    name = "mailjet"
    token_header = TOKEN_HEADER
    content_types = frozenset({"application/json"})
    dedup_key = "a hash of `MessageID` (else `Message_GUID`), event, `time`, `email` and `url`"
    default_campaign_field = "customcampaign"
    credential_headers = frozenset({"authorization"})
    #: Version 2 groups "all the events of the last second"; Mailjet gives no upper bound,
    #: so the simulator's groups stop at this many.
    max_batch = 100
    # No acceptance ("sent") or resubscribe events; a greylisted bounce is a deferral.
    emits = frozenset(mapping.EVENT_TYPES.values()) | {"deferred"}

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """One event object (Version 1) or the grouped array (Version 2)."""
        document = loads(body)
        if isinstance(document, list):
            return document
        if isinstance(document, dict):
            return [document]
        raise PayloadError("body must be a Mailjet event object or an array of them")

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One event object to a row."""
        with mapping_errors("event"):
            return normalize_event(item, self.campaign_field(context))


def loads(body: bytes) -> Any:
    """Parse a body keeping every integer exact.

    orjson keeps integers exact up to 64 bits but turns larger ones into floats without a
    word. Mailjet's payloads carry no floats, so when one appears the body is parsed again by
    the standard library, whose integers have no size limit (its floats stay floats).

    Raises:
        PayloadError: when the body is not JSON.
    """
    document = load_json(body)
    if not _has_float(document):
        return document
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # e.g. more digits than int() allows
        raise PayloadError(f"body is not JSON Mailjet could send: {exc}") from None


def _has_float(document: Any) -> bool:
    # Iterative: orjson accepts nesting deeper than Python's recursion limit.
    stack = [document]
    while stack:
        value = stack.pop()
        if type(value) is float:
            return True
        if type(value) is dict:
            stack.extend(value.values())
        elif type(value) is list:
            stack.extend(value)
    return False
