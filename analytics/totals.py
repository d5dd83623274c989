"""The rollup's second level: every metric's numerator and denominator summed per day.

A report over the per-message rollup still groups one row per message: tens of millions at
a hundred million events. But every metric of the registry is a ratio of sums over messages
(:mod:`analytics.metrics`), so the sums themselves can be kept per day a message was first
seen, campaign, recipient domain, provider and source (the finest grain any report selects
or groups by), and a report adds those rows up instead. ``rollup.build`` writes them beside
the message state (``rollup-<n>-<tag>-totals.parquet``, ``sql/message_totals.sql``).

Files the flusher wrote since the rollup are accounted for at read time: the messages they
mention are looked up in the per-message rollup by their key, their stored part is taken out
of the totals and their merged part put in; messages new in those files are simply added.

Totals are read only when they were built by today's definitions (the manifest keeps a
fingerprint of the SQL that built them) and when the dates asked for start at midnight UTC,
the totals' grain; otherwise reports take the per-message path, which gives the same numbers
more slowly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from analytics import rollup
from analytics.queries import merge_sql, messages_sql, totals_definition, totals_sql
from mailpulse.storage import LakeStore


def totals_source(store: LakeStore, files: list[str], con: duckdb.DuckDBPyConnection) -> str | None:
    """SQL for the totals of the events ``files`` a query reads (relative to the root), from
    the rollup and the files newer than it; None when no current rollup has usable totals.

    With newer files, ``con`` first finds where the messages they mention lie in the rollup
    (:func:`analytics.rollup.touched_rows`), so the query reads only those row groups.
    """
    found = rollup.covering(store, files)
    if found is None:
        return None
    built, newer = found
    if built.totals is None or built.totals_definition != totals_definition():
        return None
    stored = rollup.read_one(store, built.totals)
    if not newer:
        return stored
    rows = rollup.touched_rows(con, store, built, newer) if built.keyed else None
    # Only stored messages need merging; the rest of the fresh ones are new, taken as they are.
    merged = merge_sql(
        "(SELECT * FROM touched UNION ALL BY NAME "
        "SELECT * FROM fresh SEMI JOIN touched USING (message_id, recipient))"
    )
    now = f"""(
        {merged}
        UNION ALL BY NAME
        SELECT * FROM fresh ANTI JOIN touched USING (message_id, recipient)
    )"""
    return f"""(
    {rollup.touched_sql(store, built, newer, rows)}
    SELECT * FROM {stored}
    UNION ALL BY NAME
    {totals_sql(messages_sql("touched"), sign="-")}
    UNION ALL BY NAME
    {totals_sql(messages_sql(now))}
)"""


def day_aligned(params: dict[str, Any]) -> bool:
    """Whether the dates a query selects (``since``, ``until``) fall on the totals' grain."""
    for name in ("since", "until"):
        value = params.get(name)
        if isinstance(value, datetime):
            offset = value.utcoffset() or timedelta(0)
            if (value - offset).time() != datetime.min.time():
                return False
    return True
