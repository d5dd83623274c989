"""Resend events -> mailpulse rows.

Mapping (one event per POST, ``{"type", "created_at", "data"}``), with decisions where the docs
are silent:

* ``email.sent`` -> sent, ``email.delivered`` -> delivered, ``email.delivery_delayed`` ->
  deferred, ``email.complained`` -> complained, ``email.opened`` -> opened,
  ``email.clicked`` -> clicked.
* ``email.bounced``: ``data.bounce.type`` ``Permanent`` -> hard, ``Transient`` -> soft, anything
  else or absent -> undetermined. ``Permanent`` with subtype ``Suppressed`` (or
  ``OnAccountSuppressionList``) was never attempted (Resend's sending backend suppressed a
  recently hard-bounced address): ``dropped`` with class ``bounced``, as for SES.
* ``email.failed`` (Resend could not send: ``reached_daily_quota``, ...) -> ``dropped`` with class
  ``error``: it says nothing about the address. ``email.suppressed`` (the account's own
  suppression list) -> ``dropped`` with class ``suppressed``.
* ``email.scheduled``, ``email.received`` (inbound mail) and unknown ``email.*`` types ->
  ``other``; ``contact.*``, ``domain.*``, ``suppression.*`` and any other family are not events
  about a message: no row.
* ``occurred_at``: the open's or click's own ``timestamp`` when present, else ``created_at``.
* Recipients: one row per address in ``data.to``. Every recipient of a multi-address send gets
  the event (Resend cannot say which of them opened).
* ``event_id``: the ``webhook-id`` / ``svix-id`` header, the same on every retry; with several
  recipients, ``<id>:<recipient>``. A body replayed from quarantine without its headers gets a
  :func:`~ingest.providers.events.composite_id` of type, ``email_id``, recipient and ``created_at``.
* ``message_id``: ``data.email_id`` (the id the send API returned).
* Tags: ``data.tags`` as an object (SDK tests) or a list of ``{"name", "value"}`` (the docs),
  kept as ``name:value``; ``metadata`` is the same tags as a JSON object. Campaign: the value of
  the tag named by the campaign field (default ``campaign``); a field that is no tag but a key
  of ``data`` (``broadcast_id``, ``template_id``) reads that key.
* No machine-open flag exists: ``agent`` stays empty (heuristics are the flusher's).
"""

from __future__ import annotations

from collections.abc import Mapping
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

#: Resend ``type`` -> mailpulse event type (bounces are refined by ``data.bounce``).
TYPES = {
    "email.sent": "sent",
    "email.delivered": "delivered",
    "email.delivery_delayed": "deferred",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.failed": "dropped",
    "email.suppressed": "dropped",
}
BOUNCE_CLASSES = {"Permanent": "hard", "Transient": "soft"}
SUPPRESSED_SUBTYPES = frozenset({"Suppressed", "OnAccountSuppressionList"})


def normalize_event(
    item: Any, headers: Mapping[str, str], campaign_field: str | None
) -> list[Event]:
    """One event to one row per recipient (none for contact/domain events)."""
    if not isinstance(item, dict):
        raise MappingError("an event must be a JSON object")
    kind = item.get("type")
    if not isinstance(kind, str):
        raise MappingError("event has no type")
    if not kind.startswith("email."):
        return []  # contact.*, domain.*, suppression.*: not about a message
    data = item.get("data")
    if not isinstance(data, dict):
        raise MappingError("event has no data object")
    return _rows(item, kind, data, headers, campaign_field)


def _rows(
    item: dict[str, Any],
    kind: str,
    data: dict[str, Any],
    headers: Mapping[str, str],
    campaign_field: str | None,
) -> list[Event]:
    event_type = TYPES.get(kind, "other")
    bounce_class, reason, smtp_status = None, None, None
    if kind == "email.bounced":
        event_type, bounce_class, reason, smtp_status = _bounce(_object(data, "bounce"))
    elif kind == "email.failed":
        bounce_class, reason = "error", optional_str(_object(data, "failed").get("reason"))
    elif kind == "email.suppressed":
        suppressed = _object(data, "suppressed")
        reason = optional_str(suppressed.get("message")) or optional_str(suppressed.get("type"))
        bounce_class = "suppressed"
    engagement = _object(data, "open" if kind == "email.opened" else "click")
    when = engagement.get("timestamp") if kind in ("email.opened", "email.clicked") else None
    occurred_at = parse_timestamp(when or item.get("created_at"), field_name="created_at")
    tags = _tags(data.get("tags"))
    message_id = optional_str(data.get("email_id"))
    recipients = _recipients(data.get("to"))
    raw = orjson.dumps(item).decode()
    header_id = headers.get("webhook-id") or headers.get("svix-id")
    rows = []
    for recipient in recipients:
        if header_id:
            event_id = header_id if len(recipients) == 1 else f"{header_id}:{recipient}"
        else:
            event_id = composite_id("resend", kind, message_id, recipient, item.get("created_at"))
        rows.append(
            Event(
                event_id=event_id,
                event_type=event_type,
                occurred_at=occurred_at,
                recipient=recipient,
                raw=raw,
                message_id=message_id,
                campaign=_campaign(campaign_field, tags, data),
                tags=[f"{name}:{value}" for name, value in tags.items()],
                metadata=json_text(tags) if tags else None,
                url=optional_str(engagement.get("link")) if kind == "email.clicked" else None,
                user_agent=optional_str(engagement.get("userAgent")) if engagement else None,
                ip=optional_str(engagement.get("ipAddress")) if engagement else None,
                smtp_status=smtp_status,
                reason=reason,
                bounce_class=bounce_class,
            )
        )
    return rows


def _bounce(bounce: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """Event type, class, reason and enhanced status of a bounce."""
    bounce_type = optional_str(bounce.get("type"))
    subtype = optional_str(bounce.get("subType"))
    diagnostics = bounce.get("diagnosticCode")
    texts = [d for d in diagnostics if isinstance(d, str)] if isinstance(diagnostics, list) else []
    if isinstance(diagnostics, str):
        texts = [diagnostics]
    message = optional_str(bounce.get("message"))
    reason = "; ".join(texts) or message or (f"{bounce_type}: {subtype}" if bounce_type else None)
    status = enhanced_status(*texts, message)
    if bounce_type == "Permanent" and subtype in SUPPRESSED_SUBTYPES:
        return "dropped", "bounced", reason, status
    return "bounced", BOUNCE_CLASSES.get(bounce_type or "", "undetermined"), reason, status


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"data.{key} must be an object")
    return value


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise MappingError("data.to must list the recipient addresses")
    # dict.fromkeys keeps the order and drops an address listed twice.
    return list(dict.fromkeys(normalize_recipient(address) for address in value))


def _tags(value: Any) -> dict[str, str]:
    """Tags as ``{name: value}`` from the object form or the docs' list of tag objects."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for tag in value:
            if isinstance(tag, dict):
                pairs.append((tag.get("name"), tag.get("value")))
            elif isinstance(tag, str):
                pairs.append((tag, None))
            else:
                raise MappingError("data.tags entries must be objects or strings")
    else:
        raise MappingError("data.tags must be an object or a list")
    tags: dict[str, str] = {}
    for name, tag_value in pairs:
        key = optional_str(name)
        if key is not None:
            tags[key] = optional_str(tag_value) or ""
    return tags


def _campaign(field: str | None, tags: dict[str, str], data: dict[str, Any]) -> str | None:
    if not field:
        return None
    if field in tags:
        return tags[field] or None
    value = data.get(field)
    return optional_str(value) if isinstance(value, str | int | float) else None
