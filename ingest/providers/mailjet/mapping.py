"""Mailjet Event API objects -> mailpulse rows.

Decisions where the docs are silent:

* ``sent`` is ``delivered``: Mailjet sends it "when the destination SMTP server has accepted
  the message" (its ``smtp_reply`` gives ``smtp_status``). Mailjet reports no acceptance of its
  own, no deferral and no resubscribe.
* ``bounce`` with an ``error`` Mailjet's error table calls temporary and retried
  (``greylisted``: "Delivery will be re-attempted"; ``system issue``, ``protocol issue``,
  ``connection issue``: "never be permanent") is ``deferred``, with the same ``reason``.
* Any other ``bounce``: ``hard_bounce`` true -> hard, false -> soft, missing -> undetermined.
  ``reason`` is ``"<error_related_to>: <error>"`` plus the ``comment`` in parentheses.
  ``smtp_status`` comes from the text when it holds an enhanced code, else, for hard bounces,
  from Mailjet's fixed error words (``user unknown`` 5.1.1, ``mailbox inactive`` 5.2.1,
  ``invalid domain`` and ``no mail host`` 5.1.2).
* ``blocked`` (Mailjet never tried) is ``dropped`` classed by its ``error``: an address Mailjet
  knows is bad (``user unknown``, ``mailbox inactive``, ``invalid domain``, ``no mail host``,
  ``typofix``) is ``invalid``; ``preblocked`` (it "recently or repeatedly bounced") is
  ``bounced``: both are invalid drops for the suppression rules. ``spam reporter`` ->
  ``complained``, ``blacklisted`` -> ``suppressed``, ``duplicate in campaign`` -> ``duplicate``,
  template errors -> ``generation``, ``content blocked`` -> ``content``, ``sender blocked`` and
  ``policy issue`` -> ``policy``, ``quota exceeded`` -> ``quota``, anything else ``other``.
* ``message_id`` is ``MessageID`` written out in full (it exceeds 2^53; a float would change
  it, so a non-integral or too-large float is refused), else ``mj_message_id``, else
  ``Message_GUID``. ``raw`` keeps every integer exact too.
* ``event_id``: Mailjet sends none; a :func:`~ingest.providers.events.composite_id` of the event
  name, ``MessageID`` (else ``Message_GUID``), recipient, ``time`` and (clicks) ``url``.
* ``campaign``: ``customcampaign`` (the Send API's ``CustomCampaign``); empty is none. A source
  may set ``campaign = "mj_campaign_id"``, where Mailjet's 0 means none. Mailjet events carry
  no tags. ``metadata``: ``{"CustomID": ..., "Payload": ...}`` (the non-empty ones; a JSON
  ``Payload`` is decoded). The ``agent`` field is the reader's user agent, not a machine flag:
  ``agent`` is left to the flusher's heuristics. Unknown event names are ``other``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson

from ingest.errors import MappingError
from ingest.providers.events import (
    MICROS,
    Event,
    composite_id,
    enhanced_status,
    event_name,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
)

#: Mailjet ``event`` -> mailpulse event type.
EVENT_TYPES = {
    "sent": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "blocked": "dropped",
    "spam": "complained",
    "unsub": "unsubscribed",
}
ENGAGEMENT = frozenset({"opened", "clicked", "unsubscribed"})
#: Mailjet's fixed ``error`` words of a ``blocked`` event -> drop class.
DROP_CLASSES = {
    "user unknown": "invalid",
    "mailbox inactive": "invalid",
    "invalid domain": "invalid",
    "no mail host": "invalid",
    "typofix": "invalid",
    "preblocked": "bounced",
    "spam reporter": "complained",
    "blacklisted": "suppressed",
    "duplicate in campaign": "duplicate",
    "bad or empty template": "generation",
    "error in template language": "generation",
    "content blocked": "content",
    "sender blocked": "policy",
    "policy issue": "policy",
    "quota exceeded": "quota",
}
#: Mailjet's ``error`` words its error table calls temporary: such a bounce is retried.
TEMPORARY_ERRORS = frozenset({"greylisted", "system issue", "protocol issue", "connection issue"})
#: Mailjet's ``error`` words of a hard bounce -> the enhanced status code they stand for.
HARD_BOUNCE_STATUS = {
    "user unknown": "5.1.1",
    "mailbox inactive": "5.2.1",
    "invalid domain": "5.1.2",
    "no mail host": "5.1.2",
}
CAMPAIGN_ID = "mj_campaign_id"
_FLOAT_EXACT = 2**53


def normalize_event(item: Any, campaign_field: str | None) -> list[Event]:
    """Map one Mailjet event object to one row.

    Raises:
        MappingError: when the object is not a Mailjet event with a recipient and a time.
    """
    name = event_name(item, "Mailjet").lower()
    event_type = EVENT_TYPES.get(name, "other")
    if event_type == "bounced" and _error_word(item) in TEMPORARY_ERRORS:
        event_type = "deferred"
    recipient = normalize_recipient(item.get("email"))
    occurred_at = parse_timestamp(item.get("time"), field_name="time")
    message_id = _message_id(item)
    url = optional_str(item.get("url")) if event_type == "clicked" else None
    engaged = event_type in ENGAGEMENT
    reason = _reason(item) if event_type in ("bounced", "dropped", "deferred") else None
    bounce_class = _bounce_class(event_type, item)
    key_id = _id_text(item.get("MessageID"), "MessageID") or optional_str(item.get("Message_GUID"))
    return [
        Event(
            event_id=composite_id("mailjet", name, key_id, recipient, occurred_at // MICROS, url),
            event_type=event_type,
            occurred_at=occurred_at,
            recipient=recipient,
            raw=exact_json(item),
            message_id=message_id,
            campaign=_campaign(item, campaign_field),
            metadata=_metadata(item),
            url=url,
            user_agent=optional_str(item.get("agent")) if engaged else None,
            ip=optional_str(item.get("ip")) if engaged else None,
            smtp_status=_smtp_status(event_type, item, bounce_class),
            reason=reason,
            bounce_class=bounce_class,
        )
    ]


def exact_json(item: Any) -> str:
    """Compact JSON of the event as sent, integers of any size included."""
    try:
        return orjson.dumps(item).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library writes it exactly
        try:
            return json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise MappingError(f"event is not JSON-serializable: {exc}") from None


def _id_text(value: Any, field: str) -> str | None:
    """An integer id as its exact digits; refuse floats that may have lost some."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value else None
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _FLOAT_EXACT:
            return str(int(value)) if value else None
        raise MappingError(f"{field} arrived as a float, so its digits cannot be trusted")
    if isinstance(value, str):
        return value.strip() or None
    raise MappingError(f"{field} has type {type(value).__name__}, not an id")


def _message_id(item: dict[str, Any]) -> str | None:
    return (
        _id_text(item.get("MessageID"), "MessageID")
        or _id_text(item.get("mj_message_id"), "mj_message_id")
        or optional_str(item.get("Message_GUID"))
    )


def _reason(item: dict[str, Any]) -> str | None:
    related = optional_str(item.get("error_related_to"))
    error = optional_str(item.get("error"))
    comment = optional_str(item.get("comment"))
    text = f"{related}: {error}" if related and error else error or related
    if comment:
        return f"{text} ({comment})" if text else comment
    return text


def _error_word(item: dict[str, Any]) -> str:
    error = item.get("error")
    return error.strip().lower() if isinstance(error, str) else ""


def _bounce_class(event_type: str, item: dict[str, Any]) -> str | None:
    if event_type == "bounced":
        hard = item.get("hard_bounce")
        if hard is True:
            return "hard"
        if hard is False:
            return "soft"
        return "undetermined"
    if event_type == "dropped":
        return DROP_CLASSES.get(_error_word(item), "other")
    return None


def _smtp_status(event_type: str, item: dict[str, Any], bounce_class: str | None) -> str | None:
    if event_type == "delivered":
        return enhanced_status(item.get("smtp_reply"))
    if event_type not in ("bounced", "deferred"):
        return None
    found = enhanced_status(item.get("comment"), item.get("error"))
    if found is None and bounce_class == "hard":
        return HARD_BOUNCE_STATUS.get(_error_word(item))
    return found


def _campaign(item: dict[str, Any], field: str | None) -> str | None:
    if field is None:
        return None
    value = item.get(field)
    if isinstance(value, dict | list):
        return None
    if field == CAMPAIGN_ID and value in (0, "0"):  # Mailjet's "no campaign"
        return None
    return optional_str(value, limit=512)


def _metadata(item: dict[str, Any]) -> str | None:
    custom: dict[str, Any] = {}
    custom_id = item.get("CustomID")
    if custom_id not in (None, ""):
        custom["CustomID"] = custom_id
    payload = item.get("Payload")
    if isinstance(payload, str) and payload.strip()[:1] in ("{", "["):
        # Senders often put JSON in the payload: keep it as data, not as text.
        with contextlib.suppress(orjson.JSONDecodeError):
            payload = orjson.loads(payload)
    if payload not in (None, ""):
        custom["Payload"] = payload
    if not custom:
        return None
    try:
        return json_text(custom)
    except MappingError:  # an integer beyond 64 bits inside a custom field
        return exact_json(custom)
