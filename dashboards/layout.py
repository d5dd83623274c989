"""What every page starts with: the lake's state, the filters, and the empty state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st

from dashboards import data

EMPTY = """**No events yet.** Point an ESP's webhook at the receiver, for example
`https://<your host>:8025/webhooks/<source>` for each `[sources.<source>]` in `mailpulse.toml`
(`mailpulse serve` receives them), or run `mailpulse demo` to see realistic traffic.
Numbers appear here once the flusher has written them (every few seconds)."""


def start(title: str) -> data.Filters | None:
    """Title, filters in the sidebar; None (after saying what to do) when the lake is empty."""
    st.title(title)
    version = data.version()
    facts = data.summary(version)
    if not facts["events"]:
        st.info(EMPTY)
        return None
    campaigns, sources = data.choices(version)
    last = facts["last"]
    today = (last or datetime.now(UTC)).date()
    from dashboards import filters  # after the title, so the sidebar follows the page

    chosen = filters.sidebar(campaigns, sources, today)
    st.caption(
        f"{facts['events']:,} events, {facts['campaigns']} campaigns; latest event "
        f"{last:%Y-%m-%d %H:%M} UTC"
        if last
        else ""
    )
    return chosen


def percent(value: float | None) -> str:
    """A rate as people read it; an empty rate (no denominator) as a dash."""
    return "–" if value is None else f"{value:.1%}"


def column_formats(frame: pl.DataFrame) -> dict[str, Any]:
    """Column settings for a registry table: rates as percentages, dates without a time."""
    formats: dict[str, Any] = {}
    for name, dtype in frame.schema.items():
        if name.endswith("_rate"):
            formats[name] = st.column_config.NumberColumn(format="percent")
        elif dtype == pl.Date:
            formats[name] = st.column_config.DateColumn(format="YYYY-MM-DD")
    return formats


def finish() -> None:
    """Mark the page as drawn: the last element a page writes, so a browser (the tests, the
    benchmark) can tell a finished page from one still computing."""
    st.markdown('<div id="mailpulse-ready"></div>', unsafe_allow_html=True)
