"""``resend``: Resend's webhooks, signed the Standard Webhooks / Svix way.

Signatures are computed with the ``standardwebhooks`` library (the specification's own).

Authentication: headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``, or the
same three with the ``svix-`` prefix (Resend sends those); a request uses one family, chosen by
which id header it carries. The signature header is a space-separated list of
``v1,<base64>`` entries (other versions, such as ``v1a`` for ed25519, are ignored); any entry
may match any configured ``secret`` (rotation). Each is HMAC-SHA256 over
``<id>.<timestamp>.<raw body>`` with the key ``base64(secret without "whsec_")``, compared in
constant time; the timestamp must be within 300 s of our clock either way. A byte-identical
replay inside that window is refused (``replayed_token``); a retry is re-signed with a new
timestamp by the sender, so it passes, and its repeated id makes it a duplicate.

Mapping of the events and the decisions where Resend's docs are silent: :mod:`.mapping`; the
ESP's side for the simulator: :mod:`mailpulse.simulate.esp.resend`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from ingest.errors import AuthenticationFailed, PayloadError
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
    ReplayGuard,
)
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, load_json, mapping_errors
from ingest.providers.freshness import require_fresh, unix_seconds
from ingest.providers.resend.mapping import normalize_event
from mailpulse.config import SourceConfig

TOLERANCE_SECONDS = 300
PREFIXES = ("webhook-", "svix-")
SECRET_PREFIX = "whsec_"
#: More entries than any rotation needs; bounds the work a forged header can cause.
MAX_SIGNATURES = 16


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``ValueError`` when it is malformed."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature entry of a message, as senders (and tests) compute it."""
    return Webhook(secret).sign(msg_id, _moment(timestamp), body)


def _moment(timestamp: int | str) -> datetime:
    return datetime.fromtimestamp(int(timestamp), tz=UTC)


class ResendProvider(Provider):
    """Resend's one-event JSON webhooks, Svix-signed."""

    name = "resend"
    credential_keys = frozenset({"secret"})
    content_types = frozenset({"application/json"})
    dedup_key = "the `svix-id` / `webhook-id` header (`<id>:<recipient>` for several recipients)"
    default_campaign_field = "campaign"
    # The id and timestamp headers are kept: the id dedups at normalize time.
    credential_headers = frozenset({"authorization", "webhook-signature", "svix-signature"})
    max_batch = 1
    emits = MESSAGE_EVENT_TYPES - {"unsubscribed"}

    def __init__(self, source: SourceConfig, *, replay: ReplayGuard | None = None) -> None:
        super().__init__(source, replay=replay)
        # Decoded once: the hot path only hashes. A malformed secret is a config problem and
        # is skipped here, so it can never verify anything.
        self._hooks: list[Webhook] = []
        for secret in source.credentials.get("secret", ()):
            try:
                self._hooks.append(Webhook(secret_key(secret.reveal())))
            except ValueError:
                continue

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """At least one secret, each ``whsec_`` plus non-empty base64."""
        problems = super().config_problems(source)
        for secret in source.credentials.get("secret", ()):
            try:
                secret_key(secret.reveal())
            except ValueError:
                problems.append('secret must be "whsec_" followed by the base64 key Resend shows')
                break
        return problems

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Verify any ``v1`` signature against any secret, then freshness and single use."""
        headers = request.headers
        prefix = next((p for p in PREFIXES if f"{p}id" in headers), None)
        if prefix is None:
            raise AuthenticationFailed("webhook-id / svix-id header is missing", code="missing_id")
        msg_id = headers[f"{prefix}id"]
        timestamp = headers.get(f"{prefix}timestamp")
        signature = headers.get(f"{prefix}signature")
        if not timestamp:
            raise AuthenticationFailed(
                f"{prefix}timestamp header is missing", code="missing_timestamp"
            )
        if not signature:
            raise AuthenticationFailed(
                f"{prefix}signature header is missing", code="missing_signature"
            )
        if not self._hooks:
            raise AuthenticationFailed(
                "this source has no usable secret configured", code="no_credentials"
            )
        sent = unix_seconds(timestamp, field=f"{prefix}timestamp")
        if not self._signature_ok(msg_id, timestamp, signature, request.body):
            raise AuthenticationFailed("signature does not match", code="bad_signature")
        require_fresh(sent, now, field=f"{prefix}timestamp", back=TOLERANCE_SECONDS)
        self.refuse_replay(request, now)

    def replay_key(self, request: InboundRequest) -> tuple[str, float] | None:
        """The id and timestamp of a signed request: a byte-identical replay repeats both."""
        headers = request.headers
        prefix = next((p for p in PREFIXES if f"{p}id" in headers), None)
        timestamp = headers.get(f"{prefix}timestamp", "") if prefix else ""
        if prefix is None or not timestamp.isascii() or not timestamp.isdigit():
            return None
        key = f"{self.source.name}:{headers[f'{prefix}id']}:{timestamp}"
        return key, int(timestamp) + TOLERANCE_SECONDS

    def _signature_ok(self, msg_id: str, timestamp: str, header: str, body: bytes) -> bool:
        # The library signs (key decoding, signed content); the header is matched here because
        # its own verify() reads the wall clock, where the receiver's clock is injected.
        try:
            expected = [
                hook.sign(msg_id, _moment(timestamp), body).encode() for hook in self._hooks
            ]
        except UnicodeEncodeError:  # an id no sender could have signed
            return False
        matched = False
        for entry in header.split()[:MAX_SIGNATURES]:
            given = entry.encode("utf-8", "surrogateescape")
            for signature in expected:
                matched |= hmac.compare_digest(signature, given)
        return matched

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The one event object of the body."""
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("body must be one event object")
        return [document]

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One event to one row per recipient (none for contact/domain events)."""
        with mapping_errors("event"):
            return normalize_event(item, context.headers, self.campaign_field(context))
