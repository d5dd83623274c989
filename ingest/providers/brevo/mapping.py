"""Brevo transactional webhook events -> mailpulse rows.

Decisions where the docs are silent:

* Names are matched without case or underscores, so the payload's ``hard_bounce`` and the
  create-webhook API's ``hardBounce`` both map. ``request`` (Brevo's "Sent") is ``sent``;
  ``spam`` (the docs) and ``complaint`` (seen in payloads) are ``complained``.
* ``invalid_email`` is ``dropped`` with class ``invalid``: Brevo never attempted delivery, and
  the address is bad, so the suppression rules list it (an invalid drop). ``blocked`` is
  ``dropped`` classed from its reason (``bounced``, ``unsubscribed``, ``complained``,
  ``invalid``, ``suppressed`` for block lists, else ``policy``); ``error`` is ``dropped`` with
  class ``error`` (a failure on Brevo's side says nothing about the address).
* Opens: ``opened`` and ``unique_opened`` ("First Opening") are both ``opened``, and they share
  one event id (the id hashes the open *family*, not the name): Brevo has sent both for the
  same first open, and the lake keeps that open once; a webhook subscribed to one of the two
  loses nothing. ``proxy_open`` / ``unique_proxy_open`` likewise share theirs, and are machine
  opens with ``agent = "apple_mpp"`` (``agent_reason = "esp flag: proxy_open"``): Brevo's
  answer to Mail Privacy Protection, a proxy loading the pixel on delivery, so the metrics
  report it beside human opens, never among them.
* ``event_id``: Brevo's ``id`` is the webhook's, the same for every event, so the id is a
  :func:`~ingest.providers.events.composite_id` of the family, ``message-id``, recipient, the
  event's whole second and (clicks) ``link``.
* ``occurred_at``: ``ts_event`` (unix seconds, "when the webhook event occurred"), refined to
  the millisecond by ``ts_epoch`` when that falls in the same second (``ts_epoch`` is
  documented as the send time and is sometimes seconds); without ``ts_event``: ``ts``, then
  ``ts_epoch``, then ``date`` (Brevo writes it in CET/CEST).
* ``tags``: the ``tags`` array, else the ``tag`` field (a JSON-encoded array, or one tag).
  Transactional mail has no campaign field: the campaign is the first tag by default
  (``campaign = "tags"``); a source may name any other field (``template_id``, ...).
* ``metadata``: ``{"X-Mailin-custom": ...}``, the custom header, decoded when it holds JSON.
* ``user_agent`` only on engagement events; ``sending_ip`` is Brevo's MTA, never the reader's.
* Contact events (``list_addition``, ``contact_updated``, ``contact_deleted``) and SMS events
  (no ``email``, a phone number in ``to``) are not email events: no row. Unknown names are
  ``other``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ingest.errors import MappingError
from ingest.providers.events import (
    MICROS,
    Event,
    class_of,
    composite_id,
    enhanced_status,
    event_name,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    string_list,
)

#: Brevo event name (lower-case, no underscores) -> (id family, mailpulse event type).
EVENT_TYPES = {
    "request": ("request", "sent"),
    "sent": ("request", "sent"),
    "delivered": ("delivered", "delivered"),
    "deferred": ("deferred", "deferred"),
    "softbounce": ("soft_bounce", "bounced"),
    "hardbounce": ("hard_bounce", "bounced"),
    "invalidemail": ("invalid_email", "dropped"),
    "invalid": ("invalid_email", "dropped"),
    "blocked": ("blocked", "dropped"),
    "error": ("error", "dropped"),
    "spam": ("complaint", "complained"),
    "complaint": ("complaint", "complained"),
    "opened": ("opened", "opened"),
    "uniqueopened": ("opened", "opened"),
    "proxyopen": ("proxy_open", "opened"),
    "uniqueproxyopen": ("proxy_open", "opened"),
    "click": ("click", "clicked"),
    "clicked": ("click", "clicked"),
    "unsubscribed": ("unsubscribed", "unsubscribed"),
    "unsubscribe": ("unsubscribed", "unsubscribed"),
}
#: Marketing contact events: about a contact, not a message.
CONTACT_EVENTS = frozenset({"listaddition", "contactupdated", "contactdeleted"})
ENGAGEMENT = frozenset({"opened", "clicked", "unsubscribed"})
#: Event types whose ``reason`` is kept (a delivery's "sent" says nothing).
REASONED = frozenset({"bounced", "deferred", "dropped"})
PROXY_FAMILY = "proxy_open"
BOUNCE_CLASSES = {"soft_bounce": "soft", "hard_bounce": "hard"}
#: Lower-cased substrings of a ``blocked`` reason (checked in order) -> drop class.
BLOCK_REASONS = (
    ("bounce", "bounced"),
    ("unsub", "unsubscribed"),
    ("spam", "complained"),
    ("complain", "complained"),
    ("invalid", "invalid"),
    ("blacklist", "suppressed"),
    ("blocklist", "suppressed"),
    ("black list", "suppressed"),
    ("block list", "suppressed"),
)
#: The campaign fields that mean "the first tag".
TAG_FIELDS = frozenset({"tags", "tag"})
CUSTOM_HEADER = "X-Mailin-custom"
#: Brevo's ``date`` field is in CET/CEST.
DATE_ZONE = "Europe/Paris"


def normalize_event(item: Any, campaign_field: str | None) -> list[Event]:
    """Map one Brevo event object to zero or one row.

    Raises:
        MappingError: when the object is not a Brevo event with a recipient and a time.
    """
    name = event_name(item, "Brevo")
    key = name.lower().replace("_", "")
    if key in CONTACT_EVENTS or _is_sms(item):
        return []
    family, event_type = EVENT_TYPES.get(key, (name[:64], "other"))
    return [_event(item, family, event_type, campaign_field)]


def _event(item: dict[str, Any], family: str, event_type: str, campaign_field: str | None) -> Event:
    recipient = normalize_recipient(item.get("email"))
    message_id = optional_str(item.get("message-id"))
    occurred_at = occurred_micros(item)
    url = optional_str(item.get("link")) if event_type == "clicked" else None
    reason = optional_str(item.get("reason")) if event_type in REASONED else None
    tags = _tags(item)
    proxy = family == PROXY_FAMILY
    return Event(
        event_id=composite_id("brevo", family, message_id, recipient, occurred_at // MICROS, url),
        event_type=event_type,
        occurred_at=occurred_at,
        recipient=recipient,
        raw=orjson.dumps(item).decode(),
        message_id=message_id,
        campaign=_campaign(item, tags, campaign_field),
        tags=tags,
        metadata=_metadata(item.get(CUSTOM_HEADER)),
        url=url,
        user_agent=optional_str(item.get("user_agent")) if event_type in ENGAGEMENT else None,
        smtp_status=_smtp_status(reason),
        reason=reason,
        bounce_class=_bounce_class(family, event_type, reason),
        agent="apple_mpp" if proxy else None,
        agent_reason="esp flag: proxy_open" if proxy else None,
    )


def occurred_micros(item: dict[str, Any]) -> int:
    """When the event happened, in epoch microseconds (see the module docstring)."""
    ts_event = item.get("ts_event")
    if ts_event is not None:
        at = parse_timestamp(ts_event, field_name="ts_event")
        refined = _epoch(item.get("ts_epoch"))
        if refined is not None and refined // MICROS == at // MICROS:
            return refined
        return at
    for field in ("ts", "ts_epoch"):
        if item.get(field) is not None:
            return parse_timestamp(item[field], field_name=field)
    return _date(item.get("date"))


def _epoch(value: Any) -> int | None:
    try:
        return parse_timestamp(value, field_name="ts_epoch")
    except MappingError:
        return None


def _date(value: Any) -> int:
    if not isinstance(value, str):
        raise MappingError("event has no time (ts_event, ts, ts_epoch or date)")
    try:
        local = datetime.fromisoformat(value.strip())
        zone = ZoneInfo(DATE_ZONE)
    except ValueError:
        raise MappingError(f"date {value[:40]!r} is not a time") from None
    except ZoneInfoNotFoundError:
        raise MappingError("date is CET/CEST and no time zone data is installed") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    micros = int(local.timestamp() * MICROS)
    if micros < 0:
        raise MappingError(f"date {value[:40]!r} is before 1970")
    return micros


def _is_sms(item: dict[str, Any]) -> bool:
    """SMS events carry a phone number in ``to`` and no ``email``."""
    return "email" not in item and ("to" in item or "sms_count" in item)


def _tags(item: dict[str, Any]) -> list[str]:
    tags = item.get("tags")
    if tags is not None:
        return string_list(tags)
    tag = item.get("tag")
    if isinstance(tag, str) and tag.strip().startswith("["):
        try:  # the JSON-encoded copy of the array that Brevo also sends
            return string_list(orjson.loads(tag))
        except orjson.JSONDecodeError:
            pass
    if isinstance(tag, str):
        return [tag] if tag else []
    return string_list(tag)


def _campaign(item: dict[str, Any], tags: list[str], field: str | None) -> str | None:
    if field is None:
        return None
    if field in TAG_FIELDS:
        return tags[0][:512] if tags else None
    value = item.get(field)
    if isinstance(value, dict | list):
        return None
    return optional_str(value, limit=512)


def _metadata(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        # The custom header often carries JSON: keep it as data, not as text.
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(value)
    return json_text({CUSTOM_HEADER: value})


def drop_class(family: str, reason: str | None) -> str:
    """The drop-reason class of a ``dropped`` event."""
    if family == "invalid_email":
        return "invalid"
    if family == "error":
        return "error"
    if family != "blocked":
        return "other"
    return class_of(reason, BLOCK_REASONS, "policy")


def _bounce_class(family: str, event_type: str, reason: str | None) -> str | None:
    if event_type == "bounced":
        return BOUNCE_CLASSES.get(family, "undetermined")
    if event_type == "dropped":
        return drop_class(family, reason)
    return None


def _smtp_status(reason: str | None) -> str | None:
    return enhanced_status(reason)
