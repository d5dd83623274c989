"""SparkPost batch elements -> mailpulse rows.

Decisions where the docs are silent:

* ``event_id`` is SparkPost's ``event_id`` as text (large integer or UUID); without one, a
  :func:`~ingest.providers.events.composite_id` of type, message id, recipient, timestamp and URL.
* ``bounce_class`` comes from SparkPost's Bounce Classification Codes: category Hard -> hard;
  Soft and Block -> soft (a block, like SendGrid's ``blocked``, is not the address's fault);
  Undetermined, Admin and unknown codes -> undetermined. ``out_of_band`` is an asynchronous bounce.
* ``bounce_class`` 60 (Auto-Reply: an out-of-office answer, so the message arrived) is no
  bounce: ``other`` with SparkPost's ``reason``, never counted by the soft-bounce rule.
* ``policy_rejection`` and ``generation_rejection`` are drops classed from the reason text
  (``bounced``, ``unsubscribed``, ``complained``, ``suppressed``, ``invalid``, else ``policy``);
  ``generation_failure`` (a template that cannot render) is class ``generation``.
* ``initial_open``/``open``/``amp_initial_open``/``amp_open`` are opens, ``click``/``amp_click``
  clicks. SparkPost has no machine-open flag, so ``agent`` is left to the flusher's heuristics.
* ``relay_event`` (inbound relay, mail *to* us) and ``sms_status`` (SMS) are not outbound
  email events: no row (the request stays in the raw lake). Unknown types become ``other``.
* ``reason`` is SparkPost's ``reason`` (IPs redacted), ``smtp_status`` the enhanced code found
  in ``raw_reason``/``reason``; ``ip``/``user_agent`` only for engagement events (on a delivery
  ``ip_address`` is the receiving MTA).
"""

from __future__ import annotations

from typing import Any

from ingest.errors import MappingError
from ingest.providers.events import (
    Event,
    class_of,
    composite_id,
    enhanced_status,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    raw_json,
    string_list,
)

#: SparkPost ``type`` -> mailpulse event type.
EVENT_TYPES = {
    "injection": "sent",
    "delivery": "delivered",
    "delay": "deferred",
    "bounce": "bounced",
    "out_of_band": "bounced",
    "policy_rejection": "dropped",
    "generation_failure": "dropped",
    "generation_rejection": "dropped",
    "spam_complaint": "complained",
    "initial_open": "opened",
    "open": "opened",
    "amp_initial_open": "opened",
    "amp_open": "opened",
    "click": "clicked",
    "amp_click": "clicked",
    "list_unsubscribe": "unsubscribed",
    "link_unsubscribe": "unsubscribed",
}
#: Event classes and types that are not outbound email events: no row.
SKIPPED_CLASSES = frozenset({"relay_event"})
SKIPPED_TYPES = frozenset({"sms_status"})
ENGAGEMENT = frozenset({"opened", "clicked", "unsubscribed"})

#: SparkPost Bounce Classification Codes -> bounce class (by the table's category column).
BOUNCE_CLASSES = {
    "1": "undetermined",  # Undetermined
    "10": "hard",  # Invalid Recipient
    "20": "soft",  # Soft Bounce
    "21": "soft",  # DNS Failure
    "22": "soft",  # Mailbox Full
    "23": "soft",  # Too Large
    "24": "soft",  # Timeout
    "25": "undetermined",  # Admin Failure (SparkPost's own policy)
    "26": "undetermined",  # Smart Send Suppression (Admin)
    "30": "hard",  # Generic Bounce: No RCPT
    "40": "soft",  # Generic Bounce
    "50": "soft",  # Mail Block
    "51": "soft",  # Spam Block
    "52": "soft",  # Spam Content
    "53": "soft",  # Prohibited Attachment
    "54": "soft",  # Relaying Denied
    "70": "soft",  # Transient Failure
    "80": "undetermined",  # Subscribe (Admin)
    "90": "hard",  # Unsubscribe
    "100": "soft",  # Challenge-Response
}
#: Lower-cased reason substrings (checked in order) -> drop class.
#: SparkPost's Auto-Reply bounce class: the recipient's out-of-office, not a failure.
AUTO_REPLY_CLASS = "60"
DROP_CLASSES = (
    ("bounce", "bounced"),
    ("unsubscribe", "unsubscribed"),
    ("complain", "complained"),
    ("suppress", "suppressed"),
    ("invalid", "invalid"),
)


def normalize_element(item: Any, campaign_field: str | None) -> list[Event]:
    if not isinstance(item, dict):
        raise MappingError("a SparkPost batch element must be a JSON object")
    msys = item.get("msys")
    if not isinstance(msys, dict):
        raise MappingError('batch element has no "msys" object')
    if not msys:  # the validation ping
        return []
    if len(msys) != 1:
        raise MappingError('"msys" must hold exactly one event class')
    ((event_class, body),) = msys.items()
    if not isinstance(body, dict):
        raise MappingError(f"{event_class[:40]!r} is not an object")
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise MappingError(f"{event_class[:40]!r} event has no type")
    if event_class in SKIPPED_CLASSES or kind in SKIPPED_TYPES:
        return []
    event_type = EVENT_TYPES.get(kind, "other")
    if event_type == "bounced" and str(body.get("bounce_class", "")).strip() == AUTO_REPLY_CLASS:
        event_type = "other"  # an out-of-office reply: the message was delivered
    return [_event(body, kind, event_type, item, campaign_field)]


def _event(
    body: dict[str, Any], kind: str, event_type: str, item: Any, campaign_field: str | None
) -> Event:
    recipient = normalize_recipient(body.get("rcpt_to") or body.get("raw_rcpt_to"))
    message_id = optional_str(body.get("message_id"))
    url = optional_str(body.get("target_link_url")) if event_type == "clicked" else None
    engaged = event_type in ENGAGEMENT
    reason = optional_str(body.get("reason")) or optional_str(body.get("raw_reason"))
    metadata = body.get("rcpt_meta")
    return Event(
        event_id=optional_str(body.get("event_id"))
        or composite_id("sparkpost", kind, message_id, recipient, body.get("timestamp"), url),
        event_type=event_type,
        occurred_at=parse_timestamp(body.get("timestamp")),
        recipient=recipient,
        raw=raw_json(item),
        message_id=message_id,
        campaign=_campaign(body.get(campaign_field)) if campaign_field else None,
        tags=string_list(body.get("rcpt_tags")),
        metadata=json_text(metadata) if metadata else None,
        url=url,
        user_agent=optional_str(body.get("user_agent")) if engaged else None,
        ip=optional_str(body.get("ip_address")) if engaged else None,
        smtp_status=_smtp_status(body),
        reason=reason,
        bounce_class=_bounce_class(kind, event_type, body, reason),
    )


def drop_class(kind: str, reason: str | None) -> str:
    """The drop-reason class of a policy or generation drop."""
    if kind == "generation_failure":
        return "generation"
    return class_of(reason, DROP_CLASSES, "policy")


def _bounce_class(
    kind: str, event_type: str, body: dict[str, Any], reason: str | None
) -> str | None:
    if event_type == "bounced":
        code = optional_str(body.get("bounce_class"))
        return BOUNCE_CLASSES.get(code.strip() if code else "", "undetermined")
    if event_type == "dropped":
        return drop_class(kind, reason)
    return None


def _campaign(value: Any) -> str | None:
    if isinstance(value, dict | list):
        return None
    return optional_str(value, limit=512)


def _smtp_status(body: dict[str, Any]) -> str | None:
    return enhanced_status(body.get("raw_reason"), body.get("reason"))
