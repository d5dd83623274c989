"""Overview: the headline tiles against the previous period, and the trends."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, layout

# The per-day table: the headline numbers, narrow enough to read without scrolling sideways.
PER_DAY = ["date", *layout.TABLE_METRICS]

filters = layout.start("Campaign performance")
if filters is not None:
    version = data.version()
    now = data.metrics(None, filters, version).row(0, named=True)
    before = data.metrics(None, filters.previous(), version).row(0, named=True)
    days = (filters.until - filters.since).days
    st.caption(
        f"Messages sent {filters.since} to {filters.until} (exclusive); the changes compare "
        f"with the {days} days before."
    )
    columns = st.columns(len(data.HEADLINE_TILES))
    for column, name in zip(columns, data.HEADLINE_TILES, strict=True):
        value, previous = now[name], before[name]
        label = name.replace("_", " ")
        if name == "sent":
            # Nothing sent before: a "+N" against zero says nothing.
            delta = f"{value - previous:+,}" if previous else None
            column.metric(label, f"{value:,}", delta)
        else:
            delta = (
                None
                if value is None or previous is None
                else f"{(value - previous) * 100:+.1f} pts"
            )
            # Fewer bounces and complaints are better: their arrows read the other way.
            inverse = name in ("bounce_rate", "complaint_rate")
            column.metric(
                label, layout.percent(value), delta, delta_color="inverse" if inverse else "normal"
            )
    if not before["sent"]:
        st.caption(f"No messages were sent in the {days} days before, so there is no change.")
    trend = data.metrics("date", filters, version)
    left, middle, right = st.columns(3)
    left.altair_chart(
        charts.volume_over_time(trend, "date", "sent", "messages sent"), width="stretch"
    )
    middle.altair_chart(
        charts.rates_over_time(
            trend,
            "date",
            {"unique_open_rate": "unique open rate", "unique_click_rate": "unique click rate"},
            "engagement",
        ),
        width="stretch",
    )
    right.altair_chart(
        charts.rates_over_time(
            trend,
            "date",
            {"bounce_rate": "bounce rate", "complaint_rate": "complaint rate"},
            "problems",
        ),
        width="stretch",
    )
    st.subheader("Per day")
    layout.table(trend.select(PER_DAY), key="overview_trend")

layout.finish()
