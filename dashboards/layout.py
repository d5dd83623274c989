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


#: The columns of a table of headline numbers, after its key column (campaign, date).
TABLE_METRICS = [
    "sent",
    "delivered",
    "delivery_rate",
    "unique_open_rate",
    "unique_click_rate",
    "click_to_open_rate",
    "bounce_rate",
    "complaint_rate",
    "unsubscribe_rate",
]
#: What an empty cell shows, as in the command line's tables.
MISSING = "-"
#: Up to this many rows a table is drawn whole; longer ones scroll inside.
WHOLE_ROWS = 40


def percent(value: float | None) -> str:
    """A rate as people read it; an empty rate (no denominator) as a dash."""
    return MISSING if value is None else f"{value:.1%}"


def table(
    frame: pl.DataFrame,
    *,
    key: str | None = None,
    where: Any = st,
    column_config: dict[str, Any] | None = None,
) -> None:
    """Show ``frame`` as a sortable table people read: every row (no cut last row), missing
    values as ``-``, rates as percentages, counts with thousands separators, dates as days.

    ``where`` is the container to draw in (``st``, a column, the sidebar).
    """
    labels: dict[str, Any] = {name: label(name) for name in frame.columns}
    # Streamlit draws a missing value as a grey "None" whatever the formatting says: such
    # columns are shown as their text ("-" where missing), numbers still aligned right.
    holes = [name for name in frame.columns if frame[name].null_count()]
    for name in holes:
        if frame.schema[name].is_numeric() or frame.schema[name].is_temporal():
            labels[name] = st.column_config.TextColumn(label(name), alignment="right")
    frame = frame.with_columns(_as_text(frame, name) for name in holes)
    where.dataframe(
        _styled(frame),
        hide_index=True,
        key=key,
        column_config={**labels, **(column_config or {})},
        height="content" if frame.height <= WHOLE_ROWS else "auto",
    )


def label(name: str) -> str:
    """A column's header, short enough that a table of rates fits the page: ``bounce %``."""
    if name.endswith("_rate"):
        return name.removesuffix("_rate").replace("_", " ") + " %"
    return name.replace("_", " ")


def _styled(frame: pl.DataFrame) -> Any:
    """A pandas Styler over ``frame``: the values stay (sorting is numeric), the text changes."""
    formats = {name: _formatter(name, dtype) for name, dtype in frame.schema.items()}
    return frame.to_pandas().style.format(formats, na_rep=MISSING)


def _as_text(frame: pl.DataFrame, name: str) -> pl.Series:
    """A column as the text a reader sees, ``-`` where a value is missing."""
    show = _formatter(name, frame.schema[name])
    return pl.Series(name, [show(value) for value in frame[name].to_list()], dtype=pl.String)


def _formatter(name: str, dtype: Any) -> Any:
    if dtype == pl.String:
        return _text("{}")
    if name.endswith(("_rate", "_share")):
        return _text("{:.1%}")
    if dtype.is_integer():
        return _text("{:,.0f}")  # ints with a missing value arrive as floats
    if dtype.is_float():
        return _text("{:,.2f}")
    if dtype == pl.Date:
        return _text("{:%Y-%m-%d}")
    if dtype == pl.Datetime:
        return _text("{:%Y-%m-%d %H:%M:%S}")
    return _text("{}")


def _text(pattern: str) -> Any:
    def show(value: Any) -> str:
        return MISSING if value is None or value != value else pattern.format(value)

    return show


def finish() -> None:
    """Mark the page as drawn: the last element a page writes, so a browser (the tests, the
    benchmark) can tell a finished page from one still computing."""
    st.markdown('<div id="mailpulse-ready"></div>', unsafe_allow_html=True)
