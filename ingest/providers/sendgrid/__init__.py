"""``sendgrid``: Twilio SendGrid's Event Webhook, with the Signed Event Webhook.

Authentication: ECDSA P-256 / SHA-256 over ``X-Twilio-Email-Event-Webhook-Timestamp`` + the raw
body, checked against every configured ``public_key`` (rotation; keys are loaded once, when the
source is built). The body is never parsed here and hashed once per request. Optionally also
``basic_auth`` (credentials in the URL) and/or ``header_token`` (SendGrid's OAuth 2.0 option:
``Authorization: Bearer <token>``): when configured, they must pass as well.

Timestamp tolerance: SendGrid documents none and its SDKs check none; it retries failed
batches "for up to 24 hours" and does not say whether a retry is signed afresh. A request
whose signed timestamp is up to 24 hours old is accepted (``timestamp_tolerance`` seconds
changes that), one more than 5 minutes in the future is not. A replay inside the window can
only re-deliver authentic events, which the flusher drops by ``sg_event_id``; a replay guard is
not used, because refusing an identical retry of a request we failed to store would lose it.

Mapping: see :mod:`ingest.providers.sendgrid.mapping`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import AuthenticationFailed
from ingest.providers import shared_secret
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
    ReplayGuard,
)
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, mapping_errors, object_or_array
from ingest.providers.freshness import require_fresh, unix_seconds
from ingest.providers.sendgrid import signature
from ingest.providers.sendgrid.mapping import normalize_event
from mailpulse.config import SourceConfig

PUBLIC_KEY = "public_key"
TOLERANCE_OPTION = "timestamp_tolerance"
DEFAULT_TOLERANCE_SECONDS = 24 * 3600
FUTURE_SKEW_SECONDS = 300
_MAX_TOLERANCE_SECONDS = 7 * 24 * 3600


class SendGridProvider(Provider):
    """SendGrid's Signed Event Webhook (JSON arrays of events)."""

    name = "sendgrid"
    credential_keys = frozenset({PUBLIC_KEY}) | shared_secret.KEYS
    option_keys = frozenset({TOLERANCE_OPTION, shared_secret.TOKEN_HEADER_OPTION})
    content_types = frozenset({"application/json"})
    dedup_key = "`sg_event_id` (legacy events without one: a hash of event, message, time)"
    default_campaign_field = "campaign"
    credential_headers = frozenset({"authorization", signature.SIGNATURE_HEADER})
    # The simulator's batch size; SendGrid's own batches are bounded by 768 KB, not a count.
    max_batch = 1000
    emits = MESSAGE_EVENT_TYPES | {"resubscribed"}

    def __init__(self, source: SourceConfig, *, replay: ReplayGuard | None = None) -> None:
        super().__init__(source, replay=replay)
        self._keys = signature.load_public_keys(
            secret.reveal() for secret in source.credentials.get(PUBLIC_KEY, ())
        )
        self._shared = any(source.credentials.get(key) for key in shared_secret.KEYS)
        tolerance = source.options.get(TOLERANCE_OPTION, DEFAULT_TOLERANCE_SECONDS)
        self._tolerance = tolerance if _valid_tolerance(tolerance) else DEFAULT_TOLERANCE_SECONDS

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """A loadable P-256 ``public_key``; well-formed extra credentials and options."""
        keys = source.credentials.get(PUBLIC_KEY, ())
        if not keys:
            return [
                "needs public_key (the verification key the SendGrid UI shows); "
                "without it every request is refused"
            ]
        problems = []
        for number, key in enumerate(keys, start=1):
            try:
                signature.load_public_key(key.reveal())
            except signature.BadKey as exc:
                problems.append(f"public_key entry {number}: {exc}")
        if any(source.credentials.get(key) for key in shared_secret.KEYS):
            problems.extend(shared_secret.config_problems(source))
        tolerance = source.options.get(TOLERANCE_OPTION)
        if tolerance is not None and not _valid_tolerance(tolerance):
            problems.append(
                f"{TOLERANCE_OPTION} must be a number of seconds from 1 to {_MAX_TOLERANCE_SECONDS}"
            )
        return problems

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Verify the ECDSA signature over the raw bytes (and Basic/Bearer when configured)."""
        if not self._keys:
            raise AuthenticationFailed(
                "this source has no usable public_key configured", code="no_credentials"
            )
        headers = request.headers
        given = headers.get(signature.SIGNATURE_HEADER)
        timestamp = headers.get(signature.TIMESTAMP_HEADER)
        if not given:
            raise AuthenticationFailed(
                "X-Twilio-Email-Event-Webhook-Signature header is missing",
                code="missing_signature",
            )
        if not timestamp:
            raise AuthenticationFailed(
                "X-Twilio-Email-Event-Webhook-Timestamp header is missing",
                code="missing_timestamp",
            )
        self._check_fresh(timestamp, now)
        if self._shared:  # cheap, so before the ECDSA work
            shared_secret.check(headers, self.source, default_token_header="authorization")
        decoded = signature.decode_signature(given)
        if decoded is None or not signature.verify(
            self._keys, decoded, timestamp.encode(), request.body
        ):
            raise AuthenticationFailed("signature does not match", code="bad_signature")

    def _check_fresh(self, timestamp: str, now: float) -> None:
        field = "X-Twilio-Email-Event-Webhook-Timestamp"
        sent = unix_seconds(timestamp, field=field, allow_millis=True)
        require_fresh(sent, now, field=field, back=self._tolerance, ahead=FUTURE_SKEW_SECONDS)

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The event array (a lone object, as some docs samples are, is one event)."""
        return object_or_array(body, "body must be a JSON array of SendGrid events")

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One SendGrid event object to rows (see the mapping module for the rules)."""
        with mapping_errors("event"):
            return normalize_event(item, context.campaign_field)


def _valid_tolerance(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 < value <= _MAX_TOLERANCE_SECONDS
    )
