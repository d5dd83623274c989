"""SendGrid event objects -> mailpulse rows.

Decisions where SendGrid's documentation is silent:

* ``event_id`` is ``sg_event_id`` verbatim (SendGrid's own dedup id, uncapped). Legacy events
  without one get a :func:`~ingest.providers.events.composite_id` of event, message id, recipient,
  timestamp and URL.
* ``message_id`` is ``sg_message_id`` with surrounding blanks removed (one docs sample has a
  leading space); async bounces carry none, so ``smtp-id`` is used instead.
* ``bounce`` with ``type: "bounce"`` is hard, ``type: "blocked"`` soft, no ``type`` (legacy)
  undetermined. ``dropped`` gets a drop-reason class from SendGrid's fixed reason texts.
* The campaign, unless the source names a field: the custom arg ``campaign``, else the Marketing
  Campaigns ``marketing_campaign_name`` or ``singlesend_name``, else the first ``category``
  (SendGrid's own statistics group by category).
* Custom/unique args are the top-level keys SendGrid does not reserve; they become ``metadata``.
* ``account_status_change`` (no recipient: an account alert) yields no row; its request stays
  in the raw lake. Other unknown events with a recipient become ``other``.
"""

from __future__ import annotations

from typing import Any

from ingest.providers.events import (
    Event,
    class_of,
    composite_id,
    enhanced_status,
    event_name,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    raw_json,
    string_list,
)

#: SendGrid ``event`` -> mailpulse event type.
EVENT_TYPES = {
    "processed": "sent",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "dropped",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "group_resubscribe": "resubscribed",
}
#: Events that describe an account, not a message: no row.
ACCOUNT_EVENTS = frozenset({"account_status_change"})
#: Where the open/click user agent and client IP are meaningful (elsewhere ``ip`` is ours).
ENGAGEMENT = frozenset({"opened", "clicked", "unsubscribed", "resubscribed"})

#: Keys SendGrid itself writes; every other top-level key is a custom (unique) arg.
RESERVED_KEYS = frozenset(
    {
        "asm_group_id",
        "attempt",
        "bounce_classification",
        "category",
        "cert_err",
        "domain",
        "email",
        "event",
        "from",
        "ip",
        "marketing_campaign_id",
        "marketing_campaign_name",
        "marketing_campaign_split_id",
        "marketing_campaign_version",
        "mc_auto_id",
        "mc_auto_name",
        "mc_auto_step_id",
        "mc_stats",
        "newsletter",
        "phase_id",
        "pool",
        "post_type",
        "reason",
        "response",
        "send_at",
        "sg_content_type",
        "sg_event_id",
        "sg_machine_open",
        "sg_message_id",
        "sg_template_id",
        "sg_template_name",
        "sg_user_id",
        "singlesend_id",
        "singlesend_name",
        "smtp-id",
        "status",
        "template_hash",
        "template_id",
        "template_name",
        "template_version_id",
        "timestamp",
        "tls",
        "type",
        "url",
        "url_offset",
        "useragent",
    }
)
#: Campaign fields tried in order when the source does not name one.
CAMPAIGN_FALLBACK = ("campaign", "marketing_campaign_name", "singlesend_name", "category")

#: SendGrid's ``dropped`` reasons (lower-cased substrings, checked in order) -> drop class.
DROP_CLASSES = (
    ("smtpapi", "invalid_request"),  # "Invalid SMTPAPI header": our request, not the address
    ("bounced address", "bounced"),
    ("unsubscribed address", "unsubscribed"),
    ("spam reporting address", "complained"),
    ("spam content", "content"),
    ("quota", "quota"),
    ("invalid", "invalid"),
)


def normalize_event(item: Any, campaign_field: str | None) -> list[Event]:
    """Map one SendGrid event object to zero or one row.

    Raises:
        MappingError: when the object is not a SendGrid event with a recipient and a time.
    """
    name = event_name(item, "SendGrid")
    # The unique-args docs sample spells it "Processed": names are matched case-insensitively.
    name = name.strip().lower()
    if name in ACCOUNT_EVENTS:
        return []
    event_type = EVENT_TYPES.get(name, "other")
    recipient = normalize_recipient(item.get("email"))
    occurred_at = parse_timestamp(item.get("timestamp"))
    message_id = _message_id(item)
    url = optional_str(item.get("url")) if event_type == "clicked" else None
    engaged = event_type in ENGAGEMENT
    machine_open = event_type == "opened" and item.get("sg_machine_open") is True
    reason = optional_str(item.get("reason")) or optional_str(item.get("response"))
    return [
        Event(
            event_id=optional_str(item.get("sg_event_id"))
            or composite_id("sendgrid", name, message_id, recipient, item.get("timestamp"), url),
            event_type=event_type,
            occurred_at=occurred_at,
            recipient=recipient,
            raw=raw_json(item),
            message_id=message_id,
            campaign=_campaign(item, campaign_field),
            tags=string_list(item.get("category")),
            metadata=_custom_args(item),
            url=url,
            user_agent=optional_str(item.get("useragent")) if engaged else None,
            ip=optional_str(item.get("ip")) if engaged else None,
            smtp_status=_smtp_status(item, reason),
            reason=reason,
            bounce_class=_bounce_class(name, item, reason),
            agent="apple_mpp" if machine_open else None,
            agent_reason="esp flag: sg_machine_open" if machine_open else None,
        )
    ]


def drop_class(reason: str | None) -> str:
    """The drop-reason class of a ``dropped`` event's ``reason`` text."""
    return class_of(reason, DROP_CLASSES, "other")


def _bounce_class(name: str, item: dict[str, Any], reason: str | None) -> str | None:
    if name == "bounce":
        kind = item.get("type")
        if kind == "bounce":
            return "hard"
        if kind == "blocked":  # "can't accept the message at this time": a soft bounce
            return "soft"
        return "undetermined"
    if name == "dropped":
        return drop_class(reason)
    return None


def _message_id(item: dict[str, Any]) -> str | None:
    for key in ("sg_message_id", "smtp-id"):
        value = optional_str(item.get(key))
        if value and value.strip():
            return value.strip()
    return None


def _campaign(item: dict[str, Any], campaign_field: str | None) -> str | None:
    if campaign_field:
        return _first_text(item.get(campaign_field))
    for key in CAMPAIGN_FALLBACK:
        value = _first_text(item.get(key))
        if value:
            return value
    return None


def _first_text(value: Any) -> str | None:
    """A campaign value: a string, a number, or the first string of a list (categories)."""
    if isinstance(value, list):
        value = next((entry for entry in value if isinstance(entry, str) and entry), None)
    if isinstance(value, dict):
        return None
    return optional_str(value, limit=512)


def _custom_args(item: dict[str, Any]) -> str | None:
    custom = {key: value for key, value in item.items() if key not in RESERVED_KEYS}
    return json_text(custom) if custom else None


def _smtp_status(item: dict[str, Any], reason: str | None) -> str | None:
    return enhanced_status(item.get("status"), reason)
