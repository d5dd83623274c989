"""Mailgun ``event-data`` objects to mailpulse events.

Event mapping (Mailgun's "Webhook Payloads" docs):

=============================================  ==============================================
``accepted``                                   ``sent``
``delivered``                                  ``delivered``
``failed`` + ``severity: temporary``           ``deferred`` (Mailgun keeps retrying)
``failed`` + ``severity: permanent``,          ``dropped``: Mailgun did not try because the
  ``reason: suppress-*``                         address is on a suppression list; class
                                                 ``bounced`` / ``unsubscribed`` /
                                                 ``complained`` / ``suppressed``
``failed`` + permanent + ``reason: old``       ``bounced`` soft: Mailgun retried for hours
                                                 and gave up, a terminal soft failure
other permanent ``failed`` (``bounce``, ...)   ``bounced``: ``delivery-status.bounce-type``,
                                                 else the SMTP code (5xx hard, 4xx soft),
                                                 else ``undetermined``
``rejected``                                   ``dropped`` (class ``rejected``); without
                                                 ``recipient``, one row per address of
                                                 ``message.headers.to``
``opened`` / ``clicked``                       ``opened`` / ``clicked``; ``client-info.bot``
                                                 ``apple`` -> ``apple_mpp``, ``gmail`` ->
                                                 ``gmail_proxy``, ``generic`` ("most likely a
                                                 firewall or anti virus scan") -> ``scanner``,
                                                 any other non-empty value -> ``bot``
``complained`` / ``unsubscribed``              ``complained`` / ``unsubscribed``
anything else (``stored``, list events, ...)   ``other`` when it names a recipient, else none
=============================================  ==============================================

Dedup id: Mailgun documents ``event-data.id`` as "unique within a day", and sample payloads
show one id on two event types (a Symfony fixture derives its click from its open). The id is
therefore ``<id>:<event>:<YYYY-MM-DD>``, the day being the UTC date of the event's own
timestamp. A retry carries the same ``event-data``, so the same id.

Campaign: by default the first entry of ``campaigns`` (a string, or an object's ``id`` or
``name``). A source's ``campaign = "<name>"`` reads the user variable ``<name>`` (where
senders put ``v:campaign``), else the event field of that name; ``campaign = "tags"`` takes
the first tag.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

from ingest.errors import MappingError
from ingest.providers.events import (
    MICROS,
    Event,
    composite_id,
    enhanced_status,
    json_text,
    normalize_recipient,
    optional_str,
    parse_timestamp,
    raw_json,
    string_list,
)

DEFAULT_CAMPAIGN_FIELD = "campaigns"
_SIMPLE = {
    "accepted": "sent",
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}
_SUPPRESSION_CLASSES = {
    "suppress-bounce": "bounced",
    "suppress-unsubscribe": "unsubscribed",
    "suppress-complaint": "complained",
}
_BOTS = {"apple": "apple_mpp", "gmail": "gmail_proxy", "generic": "scanner"}


def normalize(item: Any, campaign_field: str | None) -> list[Event]:
    """Map one ``event-data`` object to zero or one event."""
    if not isinstance(item, dict):
        raise MappingError("event-data must be a JSON object")
    name = optional_str(item.get("event"))
    if name is None:
        raise MappingError("event-data has no event name")
    kind, bounce_class = _classify(name, item)
    if kind == "other" and not isinstance(item.get("recipient"), str):
        return []  # not about a recipient (list or account events): nothing to count
    occurred_at = parse_timestamp(item.get("timestamp"), field_name="event-data.timestamp")
    if name == "rejected" and item.get("recipient") is None:
        # Mailgun refused the whole message before it had recipients of its own: the
        # addresses are those of the message's To header (one row each, told apart by address).
        addresses = _header_recipients(item)
        events = [e for a in addresses for e in normalize({**item, "recipient": a}, campaign_field)]
        if len(events) > 1:
            for event in events:
                event.event_id = f"{event.event_id}:{event.recipient}"
        return events
    recipient = normalize_recipient(item.get("recipient"))
    message_id = _message_id(item)
    url = optional_str(item.get("url")) if kind == "clicked" else None
    status = _dict(item.get("delivery-status"), "delivery-status")
    client = _dict(item.get("client-info"), "client-info")
    agent = _agent(client.get("bot")) if kind in ("opened", "clicked") else None
    return [
        Event(
            event_id=_event_id(item, name, occurred_at, message_id, recipient, url),
            event_type=kind,
            occurred_at=occurred_at,
            recipient=recipient,
            raw=raw_json(item),
            message_id=message_id,
            campaign=campaign(item, campaign_field),
            tags=string_list(item.get("tags")),
            metadata=_metadata(item.get("user-variables")),
            url=url,
            user_agent=optional_str(client.get("user-agent")),
            ip=optional_str(item.get("ip")),
            smtp_status=_smtp_status(status),
            reason=_reason(status, item) if kind in ("deferred", "bounced", "dropped") else None,
            bounce_class=bounce_class,
            agent=agent,
            agent_reason="esp flag: client-info.bot" if agent else None,
        )
    ]


def campaign(item: dict[str, Any], field: str | None) -> str | None:
    """The campaign of an event under the source's campaign field (module docstring)."""
    if not field:
        return None
    if field == "campaigns":
        campaigns = item.get("campaigns")
        first = campaigns[0] if isinstance(campaigns, list) and campaigns else None
        if isinstance(first, dict):
            first = first.get("id") or first.get("name")
        return optional_str(first) if isinstance(first, str | int) else None
    if field == "tags":
        tags = string_list(item.get("tags"))
        return tags[0] if tags else None
    variables = item.get("user-variables")
    if isinstance(variables, dict) and field in variables:
        value = variables[field]
    else:
        value = item.get(field)
    return optional_str(value) if isinstance(value, str | int | float) else None


def _classify(name: str, item: dict[str, Any]) -> tuple[str, str | None]:
    if name in _SIMPLE:
        return _SIMPLE[name], None
    if name == "rejected":
        return "dropped", "rejected"
    if name != "failed":
        return "other", None
    severity = item.get("severity")
    reason = item.get("reason")
    reason = reason if isinstance(reason, str) else ""
    if severity == "temporary":
        return "deferred", None
    if reason.startswith("suppress-"):
        return "dropped", _SUPPRESSION_CLASSES.get(reason, "suppressed")
    if reason == "old":
        return "bounced", "soft"
    return "bounced", _bounce_class(_dict(item.get("delivery-status"), "delivery-status"))


def _bounce_class(status: dict[str, Any]) -> str:
    declared = status.get("bounce-type")
    if declared in ("hard", "soft"):
        return str(declared)
    code = str(status.get("code") or "")
    if code.startswith("5"):
        return "hard"
    if code.startswith("4"):
        return "soft"
    return "undetermined"


def _event_id(
    item: dict[str, Any],
    name: str,
    occurred_at: int,
    message_id: str | None,
    recipient: str,
    url: str | None,
) -> str:
    esp_id = optional_str(item.get("id"), limit=256)
    if esp_id is None:  # never seen in current payloads; keep such an event dedupable anyway
        return composite_id("mailgun", name, message_id, recipient, occurred_at, url)
    day = datetime.fromtimestamp(occurred_at / MICROS, tz=UTC).date().isoformat()
    return f"{esp_id}:{name}:{day}"


def _header_recipients(item: dict[str, Any]) -> list[str]:
    message = _dict(item.get("message"), "message")
    to = _dict(message.get("headers"), "message.headers").get("to")
    addresses = [address for _, address in getaddresses([to])] if isinstance(to, str) else []
    if not any(addresses):
        raise MappingError("rejected event has neither recipient nor message.headers.to")
    return list(dict.fromkeys(address for address in addresses if address))


def _message_id(item: dict[str, Any]) -> str | None:
    message = _dict(item.get("message"), "message")
    headers = _dict(message.get("headers"), "message.headers")
    value = optional_str(headers.get("message-id"))
    return value.strip().strip("<>") or None if value else None


def _agent(bot: Any) -> str | None:
    if not isinstance(bot, str) or not bot.strip():
        return None  # null or "" : Mailgun saw no bot
    return _BOTS.get(bot.strip().lower(), "bot")


def _metadata(variables: Any) -> str | None:
    # Mailgun sends [] when a message has no user variables; that is "none", not data.
    if variables in (None, [], {}):
        return None
    return json_text(variables)


def _smtp_status(status: dict[str, Any]) -> str | None:
    return enhanced_status(
        status.get("enhanced-code"), status.get("message"), status.get("description")
    )


def _reason(status: dict[str, Any], item: dict[str, Any]) -> str | None:
    text = optional_str(status.get("description")) or optional_str(status.get("message"))
    code = optional_str(status.get("code"))
    if text and code and not text.startswith(code):
        return f"{code} {text}"
    return text or optional_str(item.get("reason"))


def _dict(value: Any, name: str) -> dict[str, Any]:
    if value is None or value == []:  # Mailgun writes [] for some empty objects ("storage")
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"{name} must be an object")
    return value
