"""The actions' state, as the dispatcher of ``mailpulse serve`` last published it.

The dispatcher writes a snapshot every second while anything changes (``state/actions.json``,
:data:`mailpulse.lake.ACTIONS_STATUS_FILE`): per action its kind, rows by state, the oldest
row still waiting and its circuit. This reads it into one row per action, for the dashboard
and notebooks; no snapshot (no action ever ran here) is an empty frame.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mailpulse import lake

SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(),
    "do": pl.String(),  # webhook, slack, suppress; None: rows of an action no longer configured
    "pending": pl.Int64(),  # not delivered yet: waiting or being sent
    "failing": pl.Int64(),  # of those, the ones that failed at least once
    "dead": pl.Int64(),  # dead-lettered: refused for good or given up on, kept until retried
    "delivered": pl.Int64(),  # delivered since the dispatcher (mailpulse serve) started
    "oldest_pending_age_seconds": pl.Int64(),  # None when nothing waits
    "circuit": pl.String(),  # closed, open or half-open
    "updated_at": lake.TIMESTAMP,  # when the dispatcher published the snapshot
}


def actions_status(state_dir: Path, now: float | None = None) -> pl.DataFrame:
    """One row per action from the dispatcher's last snapshot in ``state_dir`` (see
    :data:`SCHEMA`); ages are counted to ``now`` (default: the current time)."""
    status = lake.read_status(state_dir, name=lake.ACTIONS_STATUS_FILE)
    actions = status.get("actions")
    if not isinstance(actions, dict) or not actions:
        return pl.DataFrame(schema=SCHEMA)
    now = time.time() if now is None else now
    updated = _time(status.get("updated_at"))
    rows = [_row(name, values, now, updated) for name, values in sorted(actions.items())]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def _row(name: str, values: Any, now: float, updated: datetime | None) -> dict[str, Any]:
    values = values if isinstance(values, dict) else {}
    oldest = values.get("oldest_pending_at")
    return {
        "action": name,
        "do": values.get("do"),
        "pending": _count(values, "pending") + _count(values, "sending"),
        "failing": _count(values, "failing"),
        "dead": _count(values, "dead"),
        "delivered": _count(values, "delivered"),
        # The row still waits after the snapshot was written: its age runs on to now.
        "oldest_pending_age_seconds": (
            max(0, int(now - oldest)) if isinstance(oldest, int | float) else None
        ),
        "circuit": values.get("circuit") or "closed",
        "updated_at": updated,
    }


def _count(values: dict[str, Any], key: str) -> int:
    value = values.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _time(seconds: Any) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if isinstance(seconds, int | float) else None
