"""A made-up event an action would take, for ``mailpulse actions test NAME``.

The event has every column of the events table but the raw payload, JSON-ready like the ones
the dispatcher sends, and it passes the action's filter: each filtered field takes the first
value the filter lists. Its ids start ``mailpulse-test-`` so a receiver can tell it apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from mailpulse.actions_config import ActionConfig

#: Used when the filter does not name one.
DEFAULT_SOURCE = "mailpulse-test"
DEFAULT_CAMPAIGN = "mailpulse-test"
DEFAULT_DOMAIN = "example.com"
_ENGAGEMENT = ("opened", "clicked")


def sample_event(action: ActionConfig, now: datetime) -> dict[str, Any]:
    """A plausible normalized event (no ``raw``) that matches ``action``'s filter."""
    rules = action.filter
    test_id = f"mailpulse-test-{uuid.uuid4().hex}"
    event_type = _first(rules.event_types) or ("clicked" if rules.agents else "bounced")
    domain = _first(rules.recipient_domains) or DEFAULT_DOMAIN
    engagement = event_type in _ENGAGEMENT
    bounce_class = _first(rules.bounce_classes) or ("hard" if event_type == "bounced" else None)
    agent = _first(rules.agents) or ("human" if engagement else None)
    when = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return {
        "event_id": test_id,
        "source": _first(rules.sources) or DEFAULT_SOURCE,
        "provider": action.options.get("provider", "generic"),
        "event_type": event_type,
        "bounce_class": bounce_class,
        "occurred_at": when,
        "received_at": when,
        "recipient": f"test-recipient@{domain}",
        "recipient_domain": domain,
        "message_id": f"<{test_id}@{domain}>",
        "campaign": _first(rules.campaigns) or DEFAULT_CAMPAIGN,
        "tags": ["mailpulse-test"],
        "metadata": '{"test": true}',
        "url": "https://example.com/" if event_type == "clicked" else None,
        "user_agent": "Mozilla/5.0 (mailpulse test)" if engagement else None,
        "ip": "192.0.2.1" if engagement else None,  # TEST-NET-1: reaches no one
        "smtp_status": _smtp_status(bounce_class) if event_type == "bounced" else None,
        "reason": "mailpulse test event" if bounce_class else None,
        "agent": agent,
        "agent_reason": "mailpulse test event" if agent else None,
        "parser_version": 1,
        "request_id": test_id,
    }


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def _smtp_status(bounce_class: str | None) -> str:
    """A code that fits the bounce: permanent for hard ones, temporary for soft ones."""
    return "450" if bounce_class == "soft" else "550"
