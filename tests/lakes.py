"""Hand-built lakes: events written straight into Parquet, for exact-answer tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mailpulse import lake
from mailpulse.storage import LakeStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
_DEFAULTS: dict[str, Any] = {
    "source": "test",
    "provider": "generic",
    "bounce_class": None,
    "message_id": None,
    "campaign": None,
    "tags": [],
    "metadata": None,
    "url": None,
    "user_agent": None,
    "ip": None,
    "smtp_status": None,
    "reason": None,
    "agent": None,
    "agent_reason": None,
    "raw": "{}",
    "parser_version": 1,
    "request_id": "r",
}


def row(
    event_id: str, event_type: str, recipient: str, at: datetime, **fields: Any
) -> dict[str, Any]:
    """One lake row with sensible defaults (``agent`` human for opens and clicks)."""
    values = {**_DEFAULTS, **fields}
    if event_type in ("opened", "clicked") and "agent" not in fields:
        values["agent"] = "human"
    return {
        **values,
        "event_id": event_id,
        "event_type": event_type,
        "recipient": recipient,
        "recipient_domain": recipient.rpartition("@")[2],
        "occurred_at": at,
        "received_at": at,
    }


def write_lake(data_dir: Path, rows: list[dict[str, Any]], batch: int = 1) -> None:
    """Write ``rows`` as lake files, partitioned by UTC date as the flusher does."""
    if not rows:
        (data_dir / "lake" / "events").mkdir(parents=True, exist_ok=True)
        return
    frame = pl.DataFrame(rows, schema=lake.EVENTS_SCHEMA)
    for date, part in lake.split_by_date(frame, "events").items():
        store = LakeStore.local(data_dir / "lake")
        store.write_parquet(part, lake.plan_path(store, "events", date, batch))
