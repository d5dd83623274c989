"""The suppression list of a whole lake in one query, and the views the dashboard draws of it.

:func:`analytics.suppression.suppressions` walks every candidate address's events in Python:
clear, and the reference for the rules, but several seconds on a ten-million-event lake.
:func:`suppression_table` answers the same question with one DuckDB query
(``sql/suppressions.sql``) and returns the same frame, row for row; a test holds the two
together on generated histories.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from analytics.lake import Lake
from analytics.queries import sql_file
from analytics.suppression import RULES, SCHEMA
from mailpulse.config import SuppressionConfig


def suppression_table(
    lake: Lake, rules: SuppressionConfig, address: str | None = None
) -> pl.DataFrame:
    """One row per suppressed address (or for ``address`` only), as ``suppressions`` gives it:
    the earliest rule that holds, its reason, time and evidence, and every rule that holds."""
    window = timedelta(days=rules.soft_bounce_window_days)

    def query() -> str:
        # From the rollup's suppression state when there is one: it skips every event but
        # those the rules read (and each address's last delivery).
        state = lake.address_state()
        if state is None:
            candidates = sql_file("suppression_candidates.sql")
        else:
            candidates = sql_file("suppression_candidates_state.sql").format(state=state)
        return sql_file("suppressions.sql").format(candidates=candidates)

    frame = lake.run_on_snapshot(
        query,
        {
            "address": address.strip().lower() if address else None,
            "hard_bounce": rules.hard_bounce,
            "complaint": rules.complaint,
            "unsubscribe": rules.unsubscribe,
            "invalid_drop": rules.invalid_drop,
            "soft_bounce_limit": rules.soft_bounce_limit,
            "window_us": window // timedelta(microseconds=1),
        },
    )
    return frame.cast(SCHEMA).select(list(SCHEMA))  # type: ignore[arg-type]


def per_day(table: pl.DataFrame) -> pl.DataFrame:
    """New suppressions per UTC day and rule (the day an address became suppressed)."""
    return (
        table.with_columns(pl.col("suppressed_at").dt.date().alias("day"))
        .group_by("day", "rule")
        .len("addresses")
        .sort("day", pl.col("rule").replace_strict(RULES, range(len(RULES)), default=len(RULES)))
    )


def latest(table: pl.DataFrame, limit: int = 20) -> pl.DataFrame:
    """The most recent additions, newest first."""
    return (
        table.sort(["suppressed_at", "address"], descending=[True, False])
        .head(limit)
        .select("address", "rule", "reason", "suppressed_at")
    )
