"""The set-based suppression query (``sql/suppressions.sql``), assembled for its two users:
the suppression table of a lake (:mod:`analytics.suppression_table`), and the rollup, which
keeps that table ready (``rollup-<n>-<tag>-suppressions.parquet``).

A table kept by the rollup was computed under one set of ``[suppression]`` rules and one
version of the SQL; :func:`definition` fingerprints both, and a reader with other rules or
other SQL computes the table itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from analytics.queries import sql_file
from mailpulse.config import SuppressionConfig


def table_sql(state: str | None) -> str:
    """The query of one row per suppressed address, over the suppression state ``state``
    (``sql/address_state.sql`` rows), or over the events when None."""
    if state is None:
        candidates = sql_file("suppression_candidates.sql")
    else:
        candidates = sql_file("suppression_candidates_state.sql").format(state=state)
    return sql_file("suppressions.sql").format(candidates=candidates)


def parameters(rules: SuppressionConfig, address: str | None = None) -> dict[str, Any]:
    """The query's parameters: the rules, and one address to look at (None: every one)."""
    window = timedelta(days=rules.soft_bounce_window_days)
    return {
        "address": address.strip().lower() if address else None,
        "hard_bounce": rules.hard_bounce,
        "complaint": rules.complaint,
        "unsubscribe": rules.unsubscribe,
        "invalid_drop": rules.invalid_drop,
        "soft_bounce_limit": rules.soft_bounce_limit,
        "window_us": window // timedelta(microseconds=1),
    }


def definition(rules: SuppressionConfig) -> str:
    """A fingerprint of the query's text and the rules: what a kept table was computed by."""
    text = table_sql("{state}") + repr(sorted(asdict(rules).items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
