"""Event times nobody means: a placeholder timestamp (0, a docs sample) or a clock decades off.

Such an event is still stored (it is authentic, and its id must dedup), but it lands in a
partition far from the others, where nobody looks. The flusher warns and counts it
(``mailpulse_events_implausible_time_total``, and ``implausible_time`` in its status).

Plausible means on or after 2000-01-01 UTC, and no more than 366 days after the receiver
got the event (ESPs report past events; a year ahead is a wrong clock or a made-up date).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AHEAD = timedelta(days=366)


def implausible(events: pl.DataFrame) -> dict[str, tuple[int, datetime]]:
    """Per source: how many ``events`` rows have an implausible ``occurred_at``, and one of them."""
    if events.is_empty():
        return {}
    odd = events.filter(
        (pl.col("occurred_at") < EARLIEST) | (pl.col("occurred_at") > pl.col("received_at") + AHEAD)
    )
    return {
        source: (count, example)
        for source, count, example in odd.group_by("source")
        .agg(pl.len(), pl.col("occurred_at").first())
        .sort("source")
        .iter_rows()
    }
