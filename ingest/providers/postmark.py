"""``postmark``: Postmark's webhooks.

Postmark signs nothing. A source proves the sender with ``basic_auth`` (credentials in the
webhook URL, or Postmark's ``HttpAuth``) and/or ``header_token``, a secret Postmark sends as a
custom header (the webhook's ``HttpHeaders``); the header is ``X-Postmark-Webhook-Token``
unless ``token_header`` names another. Every configured mechanism must pass; comparisons are
constant-time (:mod:`ingest.providers.shared_secret`).

One JSON object per POST; ``RecordType`` says what it is. Decisions where the docs are silent:

* ``Delivery`` -> delivered; ``SpamComplaint`` -> complained; ``Open`` -> opened; ``Click`` ->
  clicked (``OriginalLink``). Postmark has no machine-open flag, so ``agent`` stays empty.
* ``Bounce`` is mapped by its ``Type`` string, never ``TypeCode`` (published codes conflict):
  ``HardBounce`` -> bounced hard; ``SoftBounce``, ``Transient``, ``DnsError``, ``Blocked``,
  ``DMARCPolicy`` -> bounced soft; ``BadEmailAddress`` -> dropped ``invalid``;
  ``ManuallyDeactivated`` -> dropped ``suppressed``; ``Unconfirmed`` -> dropped ``policy``;
  ``SMTPApiError`` -> dropped ``error``; ``TemplateRenderingFailed`` -> dropped ``template``;
  ``SpamComplaint`` -> complained; auto-replies, address changes, challenge mails, virus and
  spam notifications, ``Unknown`` and the like -> ``other``; a ``Type`` we have never seen ->
  bounced ``undetermined``.
* ``SubscriptionChange`` with ``SuppressSending: true``: ``SuppressionReason`` ``HardBounce``
  -> dropped ``bounced`` and ``SpamComplaint`` -> dropped ``complained`` (Postmark deactivated
  the address after an event it reports separately: these say "no more mail", not an
  unsubscribe); ``ManualSuppression`` or anything else -> unsubscribed. ``false`` ->
  resubscribed.
* A body without ``RecordType`` (the older bounce format on postmarkapp.com) is read as
  ``Bounce`` when it carries ``BouncedAt`` and ``Type``.
* ``occurred_at``: ``DeliveredAt``, ``BouncedAt``, ``ReceivedAt`` or ``ChangedAt``.
* ``event_id``: the ``X-PM-Webhook-Trace-Id`` header (retry-stable; stored, not a credential),
  else a :func:`~ingest.providers.events.composite_id` of record type, ``MessageID``, recipient,
  the time field's text, the bounce ``ID`` and (clicks) ``OriginalLink``. ``MessageID`` alone
  is not enough: a message has many opens and clicks.
* Campaign: ``Tag`` by default (Postmark's one grouping field); a source's ``campaign`` names
  another top-level field or a ``Metadata`` key. ``Tag`` is also the one tag; ``Metadata``
  becomes ``metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ingest.errors import MappingError, PayloadError
from ingest.providers import shared_secret
from ingest.providers.base import (
    NormalizeContext,
)
from ingest.providers.events import (
    MESSAGE_EVENT_TYPES,
    Event,
    composite_id,
    enhanced_status,
    json_text,
    load_json,
    mapping_errors,
    normalize_recipient,
    optional_str,
    parse_timestamp,
)

TOKEN_HEADER = "x-postmark-webhook-token"
TRACE_HEADER = "x-pm-webhook-trace-id"

#: RecordType -> (mailpulse type, time field); Bounce and SubscriptionChange are refined.
RECORDS = {
    "Delivery": ("delivered", "DeliveredAt"),
    "Bounce": ("bounced", "BouncedAt"),
    "SpamComplaint": ("complained", "BouncedAt"),
    "Open": ("opened", "ReceivedAt"),
    "Click": ("clicked", "ReceivedAt"),
    "SubscriptionChange": ("unsubscribed", "ChangedAt"),
}
#: Bounce ``Type`` -> (mailpulse type, bounce or drop class).
BOUNCE_TYPES: dict[str, tuple[str, str | None]] = {
    "HardBounce": ("bounced", "hard"),
    "SoftBounce": ("bounced", "soft"),
    "Transient": ("bounced", "soft"),
    "DnsError": ("bounced", "soft"),
    "Blocked": ("bounced", "soft"),
    "DMARCPolicy": ("bounced", "soft"),
    "BadEmailAddress": ("dropped", "invalid"),
    "ManuallyDeactivated": ("dropped", "suppressed"),
    "Unconfirmed": ("dropped", "policy"),
    "SMTPApiError": ("dropped", "error"),
    "TemplateRenderingFailed": ("dropped", "template"),
    "SpamComplaint": ("complained", None),
    **{
        name: ("other", None)
        for name in (
            "AutoResponder",
            "AddressChange",
            "Subscribe",
            "Unsubscribe",
            "ChallengeVerification",
            "OpenRelayTest",
            "Unknown",
            "VirusNotification",
            "SpamNotification",
        )
    },
}
SUPPRESSION_DROPS = {"HardBounce": "bounced", "SpamComplaint": "complained"}


class PostmarkProvider(shared_secret.SharedSecretProvider):
    """Postmark's one-event JSON webhooks, authenticated by Basic and/or a header token."""

    name = "postmark"
    token_header = TOKEN_HEADER
    content_types = frozenset({"application/json"})
    dedup_key = (
        "the `X-PM-Webhook-Trace-Id` header (without it: a hash of RecordType, MessageID, "
        "recipient, time, bounce ID and link)"
    )
    default_campaign_field = "Tag"
    credential_headers = frozenset({"authorization", TOKEN_HEADER})
    max_batch = 1
    # No "sent" webhook; a send to a deactivated address is refused by the API, not reported.
    emits = (MESSAGE_EVENT_TYPES - {"sent", "deferred", "dropped"}) | {"resubscribed"}

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """The one record of the body."""
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("body must be one JSON object")
        return [document]

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One record to one row."""
        if not isinstance(item, dict):
            raise MappingError("a record must be a JSON object")
        with mapping_errors("record"):
            return [_row(item, context, self.campaign_field(context))]


def _record_type(item: dict[str, Any]) -> str:
    record = item.get("RecordType")
    if record is None and "BouncedAt" in item and "Type" in item:
        return "SpamComplaint" if item.get("Type") == "SpamComplaint" else "Bounce"
    if not isinstance(record, str) or record not in RECORDS:
        raise MappingError(f"RecordType {str(record)[:40]!r} is not one Postmark sends")
    return record


def _row(item: dict[str, Any], context: NormalizeContext, campaign_field: str | None) -> Event:
    record = _record_type(item)
    event_type, time_field = RECORDS[record]
    bounce_class: str | None = None
    reason = smtp_status = None
    if record == "Bounce":
        bounce_type = optional_str(item.get("Type")) or ""
        event_type, bounce_class = BOUNCE_TYPES.get(bounce_type, ("bounced", "undetermined"))
        details = optional_str(item.get("Details"))
        reason = details or optional_str(item.get("Description"))
        smtp_status = enhanced_status(details)
    elif record == "SubscriptionChange":
        event_type, bounce_class, reason = _subscription(item)
    recipient = normalize_recipient(item.get("Email") or item.get("Recipient"))
    message_id = optional_str(item.get("MessageID"))
    when = item.get(time_field)
    url = optional_str(item.get("OriginalLink")) if record == "Click" else None
    event_id = context.headers.get(TRACE_HEADER) or composite_id(
        "postmark", record, message_id, recipient, when, item.get("ID"), url
    )
    metadata = item.get("Metadata")
    geo = item.get("Geo")
    engagement = record in ("Open", "Click")
    tag = optional_str(item.get("Tag"))
    return Event(
        event_id=event_id,
        event_type=event_type,
        occurred_at=parse_timestamp(when, field_name=time_field),
        recipient=recipient,
        raw=orjson.dumps(item).decode(),
        message_id=message_id,
        campaign=_campaign(campaign_field, item, metadata),
        tags=[tag] if tag else [],
        metadata=json_text(metadata) if metadata else None,
        url=url,
        user_agent=optional_str(item.get("UserAgent")) if engagement else None,
        ip=optional_str(geo.get("IP")) if engagement and isinstance(geo, dict) else None,
        smtp_status=smtp_status,
        reason=reason,
        bounce_class=bounce_class,
    )


def _subscription(item: dict[str, Any]) -> tuple[str, str | None, str | None]:
    suppress = item.get("SuppressSending")
    if not isinstance(suppress, bool):
        raise MappingError("SubscriptionChange has no boolean SuppressSending")
    reason = optional_str(item.get("SuppressionReason"))
    if not suppress:
        return "resubscribed", None, None
    if reason in SUPPRESSION_DROPS:
        return "dropped", SUPPRESSION_DROPS[reason], reason
    return "unsubscribed", None, reason


def _campaign(field: str | None, item: dict[str, Any], metadata: Any) -> str | None:
    if not field:
        return None
    value = item.get(field)
    if value is None and isinstance(metadata, dict):
        value = metadata.get(field)
    return optional_str(value) if isinstance(value, str | int | float) else None
