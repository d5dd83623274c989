"""``mailgun``: Mailgun's JSON webhooks, one event per POST.

Body (``application/json``)::

    {"signature": {"timestamp": "<unix s>", "token": "<50 chars>", "signature": "<hex>"
                   [, "parent-signature": "<hex>"]},
     "event-data": {"event": "...", "id": "...", "timestamp": 1529006854.329574, ...}}

Authentication ("Securing Webhooks"): ``signature`` is the lowercase hex HMAC-SHA256 of
``timestamp + token`` keyed with the domain's webhook signing key (credential
``signing_key``). Events of a subaccount's domain also carry ``parent-signature``, the same
HMAC keyed with the primary account's key (credential ``parent_signing_key``), so one
receiver can accept every subaccount with one key. A request is authentic when its
``signature`` matches a ``signing_key`` or its ``parent-signature`` matches a
``parent_signing_key``; each key may be a list (rotation). The timestamp must be within
300 s of our clock (the default of Mailgun's own Python SDK ``verify_webhook``), and each
token is accepted once (the docs ask receivers to refuse a repeated token).

Only ``timestamp + token`` is signed: ``event-data`` itself is not integrity-protected by
Mailgun's scheme, which is why replay protection on the token matters.

The legacy form-encoded webhooks (accounts from before mid-2018) carry other field names and
another event vocabulary; they are not accepted (415), since current Mailgun sends JSON.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ingest.errors import AuthenticationFailed, PayloadError
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
)
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, load_json
from ingest.providers.freshness import require_fresh, unix_seconds
from ingest.providers.mailgun import mapping
from mailpulse.config import Secret, SourceConfig

TOLERANCE_SECONDS = 300
SIGNING_KEY = "signing_key"
PARENT_SIGNING_KEY = "parent_signing_key"
_MAX_TOKEN_CHARS = 256  # Mailgun's are 50; anything far longer is not Mailgun's


def sign(key: str, timestamp: str, token: str) -> str:
    """Mailgun's ``signature`` (and ``parent-signature``): hex HMAC-SHA256 of timestamp+token."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


class MailgunProvider(Provider):
    """Mailgun webhooks: HMAC over timestamp and single-use token, one event per POST."""

    name = "mailgun"
    credential_keys = frozenset({SIGNING_KEY, PARENT_SIGNING_KEY})
    content_types = frozenset({"application/json"})
    dedup_key = (
        "`event-data.id` (unique within a day, per Mailgun) scoped by event type and the UTC "
        "day of `event-data.timestamp`"
    )
    default_campaign_field = mapping.DEFAULT_CAMPAIGN_FIELD
    credential_headers = frozenset({"authorization"})
    max_batch = 1
    emits = MESSAGE_EVENT_TYPES

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """Either key kind is enough: a primary account may verify subaccounts' events only."""
        if source.credentials.get(SIGNING_KEY) or source.credentials.get(PARENT_SIGNING_KEY):
            return []
        return [
            "needs signing_key (and/or parent_signing_key for subaccount events) "
            "(a source without credentials refuses nothing)"
        ]

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Check the HMAC of timestamp+token, its freshness, then that the token is new."""
        keys = self.source.credentials.get(SIGNING_KEY, ())
        parent_keys = self.source.credentials.get(PARENT_SIGNING_KEY, ())
        if not keys and not parent_keys:
            raise AuthenticationFailed(
                "this source has no signing key configured", code="no_credentials"
            )
        signature = _signature_object(request.body)
        timestamp, token = _timestamp_and_token(signature)
        require_fresh(int(timestamp), now, field="signature.timestamp", back=TOLERANCE_SECONDS)
        signed = (timestamp + token).encode()
        own = _any_match(signed, signature.get("signature"), keys)
        parent = _any_match(signed, signature.get("parent-signature"), parent_keys)
        if not (own or parent):
            raise AuthenticationFailed("signature does not match", code="bad_signature")
        self.refuse_replay(request, now)

    def replay_key(self, request: InboundRequest) -> tuple[str, float]:
        """The token, spent until the timestamp tolerance ends (the docs ask for single use)."""
        timestamp, token = _timestamp_and_token(_signature_object(request.body))
        return f"{request.source}:{token}", int(timestamp) + TOLERANCE_SECONDS

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The one ``event-data`` object of the body."""
        document = load_json(body)
        if not isinstance(document, dict) or not isinstance(document.get("event-data"), dict):
            raise PayloadError('body must be an object with an "event-data" object')
        return [document["event-data"]]

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """Map one ``event-data`` object (see :mod:`ingest.providers.mailgun.mapping`)."""
        return mapping.normalize(item, self.campaign_field(context))


def _signature_object(body: bytes) -> dict[str, Any]:
    # The signature travels inside the body: parsing the one small event is the only way in.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AuthenticationFailed(
            "body is not JSON, so it carries no signature", code="missing_signature"
        ) from None
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(signature, dict):
        raise AuthenticationFailed('body has no "signature" object', code="missing_signature")
    return signature


def _timestamp_and_token(signature: Mapping[str, Any]) -> tuple[str, str]:
    timestamp = signature.get("timestamp")
    token = signature.get("token")
    if timestamp is None or not (signature.get("signature") or signature.get("parent-signature")):
        raise AuthenticationFailed(
            "signature object lacks timestamp or signature", code="missing_signature"
        )
    if isinstance(timestamp, int) and not isinstance(timestamp, bool) and timestamp >= 0:
        timestamp = str(timestamp)  # the docs type it int; payloads send a string
    if not isinstance(timestamp, str):
        raise AuthenticationFailed("signature.timestamp must be unix seconds", code="bad_timestamp")
    unix_seconds(timestamp, field="signature.timestamp")
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
        raise AuthenticationFailed("signature.token is missing or malformed", code="bad_token")
    return timestamp, token


def _any_match(signed: bytes, given: Any, keys: Iterable[Secret]) -> bool:
    if not isinstance(given, str) or not given:
        return False
    presented = given.strip().encode("utf-8", "replace")
    matched = False
    # Every key is tried (no early exit), so timing does not say which one matched.
    for key in keys:
        expected = hmac.new(key.reveal().encode(), signed, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, presented)
    return matched
