"""The suppression list of a whole lake in one query, and the views the dashboard draws of it.

:func:`analytics.suppression.suppressions` walks every candidate address's events in Python:
clear, and the reference for the rules, but several seconds on a ten-million-event lake.
:func:`suppression_table` answers the same question with one DuckDB query
(``sql/suppressions.sql``) and returns the same frame, row for row; a test holds the two
together on generated histories. The rollup keeps the table of the files it covers; with it,
only the addresses that newer files mention are computed again.
"""

from __future__ import annotations

import polars as pl

from analytics import rollup
from analytics.lake import Lake
from analytics.queries import address_state_sql
from analytics.suppression import RULES, SCHEMA
from analytics.suppression_sql import definition, parameters, table_sql
from mailpulse.config import SuppressionConfig


def suppression_table(
    lake: Lake, rules: SuppressionConfig, address: str | None = None
) -> pl.DataFrame:
    """One row per suppressed address (or for ``address`` only), as ``suppressions`` gives it:
    the earliest rule that holds, its reason, time and evidence, and every rule that holds."""

    def query() -> str:
        if address is None:
            kept = _kept_table(lake, rules)
            if kept is not None:
                return kept
        # From the rollup's suppression state when there is one: it skips every event but
        # those the rules read (and each address's last delivery).
        return table_sql(lake.address_state())

    frame = lake.run_on_snapshot(query, parameters(rules, address))
    return frame.cast(SCHEMA).select(list(SCHEMA))  # type: ignore[arg-type]


def _kept_table(lake: Lake, rules: SuppressionConfig) -> str | None:
    """The rollup's suppression table brought up to date, when it was computed by these rules:
    addresses the newer files mention are computed again from their whole state."""
    found = rollup.covering(lake.store, lake.files) if lake.use_rollup else None
    if found is None:
        return None
    built, newer = found
    if built.suppressions is None or built.suppressions_definition != definition(rules):
        return None
    kept = rollup.read_one(lake.store, built.suppressions)
    if not newer:
        return f"SELECT * FROM {kept} ORDER BY address"
    assert built.addresses is not None  # written with the table
    stored = rollup.read_one(lake.store, built.addresses)
    state = (
        f"SELECT * FROM {stored} SEMI JOIN touched USING (address)\n"
        "UNION ALL BY NAME\nSELECT * FROM newer"
    )
    return f"""WITH newer AS ({address_state_sql(rollup.read_files(lake.store, newer))}),
touched AS (SELECT DISTINCT address FROM newer)
SELECT * FROM {kept} ANTI JOIN touched USING (address)
UNION ALL BY NAME
SELECT * FROM ({table_sql(state)})
ORDER BY address"""


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
