"""SES events (event publishing's ``eventType`` and classic ``notificationType``) to rows.

One row per recipient: bounced, complained and delivered rows name the recipients SES lists
for them; every other event (send, open, click, reject, ...) concerns the whole message, so it
has one row per ``mail.destination`` address (SES cannot tell which recipient of a
multi-recipient message opened it).

Decisions where SES leaves room:

* ``Bounce`` Permanent -> hard, Transient -> soft, Undetermined -> undetermined; Permanent
  with subtype ``Suppressed``/``OnAccountSuppressionList`` was never attempted: ``dropped``
  with class ``bounced``.
* ``Complaint`` with ``complaintFeedbackType`` ``not-spam`` is the recipient saying it is
  *not* spam: ``other``. Subtype ``OnAccountSuppressionList``: ``dropped``, class ``complained``.
* ``Reject`` -> ``dropped`` class ``policy``; ``Rendering Failure`` -> ``dropped`` class
  ``template``; ``DeliveryDelay`` -> ``deferred``.
* ``Subscription``: ``unsubscribeAll`` turned on -> ``unsubscribed``, turned off ->
  ``resubscribed``; otherwise a topic turned OptOut -> ``unsubscribed``, only OptIn ->
  ``resubscribed``, no change -> ``other``.
* Campaign: the first value of the message tag named by the campaign field (default
  ``campaign``; ``ses:configuration-set`` works too); a field that is no tag but a
  ``mail.commonHeaders`` key (``subject``) reads that header.
* Tags: the message's own tags (not SES's automatic ``ses:*`` ones) as ``name:value``;
  metadata: those tags as SES sent them (an object of lists).
* SES's setup ping (``AmazonSnsSubscriptionSucceeded``) gives no rows; an unknown type is a
  ``MappingError`` (quarantined, replayable once mapped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ingest.errors import MappingError
from ingest.providers.events import (
    Event,
    composite_id,
    enhanced_status,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
)

_BOUNCE_CLASSES = {"Permanent": "hard", "Transient": "soft", "Undetermined": "undetermined"}
_SUPPRESSED = frozenset({"Suppressed", "OnAccountSuppressionList"})
_PINGS = frozenset({"AmazonSnsSubscriptionSucceeded"})


@dataclass(frozen=True, slots=True)
class Row:
    """The per-recipient facts of one SES event, before the shared ones are added."""

    recipient: Any
    event_type: str
    occurred_at: Any
    bounce_class: str | None = None
    smtp_status: str | None = None
    reason: str | None = None
    url: str | None = None
    user_agent: str | None = None
    ip: str | None = None


def ses_type(event: dict[str, Any]) -> str:
    """The event's SES type, spaces removed (``Rendering Failure`` is ``RenderingFailure``)."""
    kind = event.get("eventType", event.get("notificationType"))
    if not isinstance(kind, str):
        raise MappingError("SES event has no eventType or notificationType")
    return kind.replace(" ", "")


def event_rows(
    event: dict[str, Any], *, sns_message_id: str | None, campaign_field: str
) -> list[Event]:
    """All rows of one SES event; ``sns_message_id`` (with the recipient) is their id."""
    kind = ses_type(event)
    if kind in _PINGS:
        return []
    mapper = _MAPPERS.get(kind)
    if mapper is None:
        raise MappingError(f"SES event type {kind[:40]!r} is not known")
    mail = _object(event, "mail")
    message_id = optional_str(mail.get("messageId"))
    raw = orjson.dumps(event).decode()
    campaign = _campaign(mail, campaign_field)
    own_tags = _own_tags(mail)
    tags = [f"{name}:{value}" for name, values in own_tags.items() for value in values]
    metadata = json_text(own_tags) if own_tags else None
    events = []
    for row in mapper(event, mail):
        recipient = normalize_recipient(row.recipient)
        occurred_at = parse_timestamp(row.occurred_at, field_name=f"{kind} timestamp")
        if sns_message_id is not None:
            event_id = f"{sns_message_id}:{recipient}"
        else:
            event_id = composite_id("ses", kind, message_id, recipient, occurred_at, row.url)
        events.append(
            Event(
                event_id=event_id,
                event_type=row.event_type,
                occurred_at=occurred_at,
                recipient=recipient,
                raw=raw,
                message_id=message_id,
                campaign=campaign,
                tags=tags,
                metadata=metadata,
                url=row.url,
                user_agent=row.user_agent,
                ip=row.ip,
                smtp_status=row.smtp_status,
                reason=row.reason,
                bounce_class=row.bounce_class,
            )
        )
    return events


def _send(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    return [Row(r, "sent", mail.get("timestamp")) for r in _destination(mail)]


def _delivery(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    delivery = _object(event, "delivery")
    response = optional_str(delivery.get("smtpResponse"))
    status = enhanced_status(response)
    recipients = _list(delivery, "recipients")
    return [Row(r, "delivered", delivery.get("timestamp"), smtp_status=status) for r in recipients]


def _delay(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    delay = _object(event, "deliveryDelay")
    rows = []
    for item in _list(delay, "delayedRecipients"):
        recipient = _item(item)
        diagnostic = optional_str(recipient.get("diagnosticCode"))
        rows.append(
            Row(
                recipient.get("emailAddress"),
                "deferred",
                delay.get("timestamp"),
                smtp_status=_status(recipient.get("status"), diagnostic),
                reason=diagnostic or optional_str(delay.get("delayType")),
            )
        )
    return rows


def _bounce(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    bounce = _object(event, "bounce")
    bounce_type = optional_str(bounce.get("bounceType"))
    subtype = optional_str(bounce.get("bounceSubType"))
    if bounce_type == "Permanent" and subtype in _SUPPRESSED:
        kind, bounce_class = "dropped", "bounced"
    else:
        kind, bounce_class = "bounced", _BOUNCE_CLASSES.get(bounce_type or "", "undetermined")
    rows = []
    for item in _list(bounce, "bouncedRecipients"):
        recipient = _item(item)
        diagnostic = optional_str(recipient.get("diagnosticCode"))
        rows.append(
            Row(
                recipient.get("emailAddress"),
                kind,
                bounce.get("timestamp"),
                bounce_class=bounce_class,
                smtp_status=_status(recipient.get("status"), diagnostic),
                reason=diagnostic or f"{bounce_type}: {subtype}",
            )
        )
    return rows


def _complaint(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    complaint = _object(event, "complaint")
    feedback = optional_str(complaint.get("complaintFeedbackType"))
    kind, drop_class = "complained", None
    if complaint.get("complaintSubType") == "OnAccountSuppressionList":
        kind, drop_class = "dropped", "complained"
    elif feedback == "not-spam":
        kind = "other"
    return [
        Row(
            _item(item).get("emailAddress"),
            kind,
            complaint.get("timestamp"),
            bounce_class=drop_class,
            reason=feedback,
        )
        for item in _list(complaint, "complainedRecipients")
    ]


def _open(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    opened = _object(event, "open")
    return [
        Row(
            r,
            "opened",
            opened.get("timestamp"),
            user_agent=optional_str(opened.get("userAgent")),
            ip=optional_str(opened.get("ipAddress")),
        )
        for r in _destination(mail)
    ]


def _click(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    click = _object(event, "click")
    return [
        Row(
            r,
            "clicked",
            click.get("timestamp"),
            url=optional_str(click.get("link")),
            user_agent=optional_str(click.get("userAgent")),
            ip=optional_str(click.get("ipAddress")),
        )
        for r in _destination(mail)
    ]


def _reject(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    reason = optional_str(_object(event, "reject").get("reason"))
    # A Reject carries no time of its own: SES refused the message when it was submitted.
    return [
        Row(r, "dropped", mail.get("timestamp"), bounce_class="policy", reason=reason)
        for r in _destination(mail)
    ]


def _rendering_failure(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    failure = _object(event, "failure")
    reason = optional_str(failure.get("errorMessage"))
    return [
        Row(r, "dropped", mail.get("timestamp"), bounce_class="template", reason=reason)
        for r in _destination(mail)
    ]


def _subscription(event: dict[str, Any], mail: dict[str, Any]) -> list[Row]:
    subscription = _object(event, "subscription")
    kind, reason = _preference_change(
        _object(subscription, "oldTopicPreferences", required=False),
        _object(subscription, "newTopicPreferences", required=False),
    )
    source = optional_str(subscription.get("source"))
    text = f"{reason} ({source})" if source else reason
    return [Row(r, kind, subscription.get("timestamp"), reason=text) for r in _destination(mail)]


def _preference_change(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, str]:
    was_all, now_all = old.get("unsubscribeAll") is True, new.get("unsubscribeAll") is True
    if now_all and not was_all:
        return "unsubscribed", "unsubscribed from all topics"
    if was_all and not now_all:
        return "resubscribed", "resubscribed"
    before, after = _topics(old), _topics(new)
    opted_out = sorted(t for t, s in after.items() if s == "OptOut" and before.get(t) != "OptOut")
    opted_in = sorted(t for t, s in after.items() if s == "OptIn" and before.get(t) != "OptIn")
    if opted_out:
        return "unsubscribed", "opted out of " + ", ".join(opted_out)
    if opted_in:
        return "resubscribed", "opted in to " + ", ".join(opted_in)
    return "other", "topic preferences unchanged"


def _topics(preferences: dict[str, Any]) -> dict[str, str]:
    topics: dict[str, str] = {}
    for item in _list(preferences, "topicSubscriptionStatus", required=False):
        if isinstance(item, dict):
            name, status = item.get("topicName"), item.get("subscriptionStatus")
            if isinstance(name, str) and isinstance(status, str):
                topics[name] = status
    return topics


_Mapper = Callable[[dict[str, Any], dict[str, Any]], list[Row]]
_MAPPERS: dict[str, _Mapper] = {
    "Send": _send,
    "Delivery": _delivery,
    "DeliveryDelay": _delay,
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Open": _open,
    "Click": _click,
    "Reject": _reject,
    "RenderingFailure": _rendering_failure,
    "Subscription": _subscription,
}


def _campaign(mail: dict[str, Any], field_name: str) -> str | None:
    tags = mail.get("tags")
    if isinstance(tags, dict) and field_name in tags:
        values = tags[field_name]
        first = values[0] if isinstance(values, list) and values else values
        return optional_str(first) if not isinstance(first, dict | list) else None
    headers = mail.get("commonHeaders")
    if isinstance(headers, dict) and isinstance(headers.get(field_name), str):
        return optional_str(headers[field_name])
    return None


def _own_tags(mail: dict[str, Any]) -> dict[str, list[str]]:
    tags = mail.get("tags")
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise MappingError("mail.tags must be an object of lists")
    own: dict[str, list[str]] = {}
    for name, values in tags.items():
        if name.startswith("ses:"):
            continue
        items = values if isinstance(values, list) else [values]
        own[name] = [text for value in items if (text := optional_str(value)) is not None]
    return own


def _status(value: Any, diagnostic: str | None) -> str | None:
    return enhanced_status(value, diagnostic)


def _destination(mail: dict[str, Any]) -> list[Any]:
    return _list(mail, "destination")


def _object(parent: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = parent.get(key)
    if isinstance(value, dict):
        return value
    if value is None and not required:
        return {}
    raise MappingError(f"SES event has no {key} object")


def _list(parent: dict[str, Any], key: str, *, required: bool = True) -> list[Any]:
    value = parent.get(key)
    if isinstance(value, list):
        return value
    if value is None and not required:
        return []
    raise MappingError(f"SES event has no {key} list")


def _item(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MappingError("SES recipient entries must be objects")
    return value
