"""Which normalized events each action takes: the filters of ``[actions.<name>]`` on a frame.

Matching runs on a whole batch of events at once (polars expressions), and what matches
becomes a :class:`~ingest.spool.outbox.NewAction` carrying the event as JSON and an
idempotency id derived from the action's name and the event's id, so every attempt of an
action, and an ESP's retry of the event, carry the same ``webhook-id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson
import polars as pl

from ingest.spool.outbox import NewAction
from mailpulse.actions_config import ActionConfig, ActionFilter
from mailpulse.lake import TIMESTAMP

_COLUMN = {
    "event_types": "event_type",
    "sources": "source",
    "campaigns": "campaign",
    "bounce_classes": "bounce_class",
    "agents": "agent",
}


def webhook_id(action: str, event_id: str) -> str:
    """The idempotency id of ``action`` for ``event_id``: the same on every attempt."""
    digest = hashlib.sha256(f"{action}\0{event_id}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def condition(rule: ActionFilter) -> pl.Expr:
    """The filter as one polars expression; a missing value never matches a listed one."""
    parts = [
        pl.col(column).is_in(list(getattr(rule, key)))
        for key, column in _COLUMN.items()
        if getattr(rule, key)
    ]
    if rule.recipient_domains:
        domain = pl.col("recipient_domain").str.to_lowercase()
        parts.append(domain.is_in(list(rule.recipient_domains)))
    if not parts:
        return pl.lit(True)
    return pl.all_horizontal(parts).fill_null(False)


def match(events: pl.DataFrame, actions: Mapping[str, ActionConfig]) -> list[NewAction]:
    """Every (action, event) pair whose filter takes the event, in the events' order."""
    if events.is_empty() or not actions:
        return []
    found: list[NewAction] = []
    for name, action in actions.items():
        taken = events.filter(condition(action.filter))
        for event in event_dicts(taken):
            found.append(
                NewAction(
                    action=name,
                    event_id=event["event_id"],
                    webhook_id=webhook_id(name, event["event_id"]),
                    event=orjson.dumps(event),
                    received_at=_seconds(event["received_at"]),
                )
            )
    return found


def event_dicts(events: pl.DataFrame) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts: times in ISO 8601 (UTC), without the raw payload."""
    times = [name for name, dtype in events.schema.items() if dtype == TIMESTAMP]
    frame = events.drop("raw", strict=False).with_columns(
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ") for name in times
    )
    yield from frame.iter_rows(named=True)


def _seconds(iso: str | None) -> float:
    if not iso:
        return 0.0
    return datetime.fromisoformat(iso).timestamp()
